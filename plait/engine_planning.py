"""Engine methods for recipes and plans: stored recipes, history estimates, and starting a plan."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from plait.errors import PlanError
from plait.planning.estimate import Estimate, RunHistory, estimate_from
from plait.planning.marks import RECIPE_KEY, recipe_mark
from plait.planning.plan import Plan
from plait.planning.planner import Planner
from plait.planning.recipes import Recipe, Recipes, input_data, recipe_from_data, recipe_to_data
from plait.store import recipes as table
from plait.store.base import RunFilter
from plait.workflow.graph import Workflow

if TYPE_CHECKING:
    from plait.clock import Clock
    from plait.documents.model import WorkflowDocument
    from plait.loop_thread import LoopThread
    from plait.store.base import Store

HISTORY_RUNS = 100
"""How many of a recipe's latest succeeded runs an estimate reads."""


class PlanningMixin:
    """Part of ``Engine``: recipes stored in the database, estimates from run history, runs of plans."""

    # Provided by Engine.
    _loop: LoopThread
    _store: Store
    namespace: str
    clock: Clock

    if TYPE_CHECKING:

        def compile_document(self, document: WorkflowDocument | Mapping[str, Any] | str) -> Workflow[Any, Any]: ...

    # -- stored recipes --------------------------------------------------------

    def save_recipe(self, recipe: Recipe) -> None:
        """Store a recipe whose body is a document (replacing one with the same id), for every process.

        The body must compile here (DocumentInvalid otherwise). A recipe with a
        code body cannot be stored (PlanError): add it to ``plait.Recipes`` in each process.
        """
        data = recipe_to_data(recipe)
        self.compile_document(data["body"])
        row = table.RecipeRow(
            self.namespace, recipe.id, json.dumps(data, separators=(",", ":")), self.clock.now().timestamp()
        )
        self._loop.run(table.save(self._store, row))

    def delete_recipe(self, recipe_id: str) -> bool:
        """Remove a stored recipe; False if there was none. Runs already started keep their record."""
        return self._loop.run(table.delete(self._store, self.namespace, recipe_id))

    def recipes(self, *extra: Recipe) -> Recipes:
        """The stored recipes (their bodies compiled and registered, so this process can run them), plus ``extra``.

        A worker calls it at start to run plans started by another process.
        Raises PlanError if an ``extra`` recipe clashes with a stored one.
        """
        found = Recipes()
        for row in self._loop.run(table.every(self._store, self.namespace)):
            recipe = recipe_from_data(json.loads(row.body))
            self.compile_document(recipe.body)  # type: ignore[arg-type]  # stored bodies are documents
            found.add(recipe)
        return found.add(*extra)

    def planner(self, recipes: Recipes | None = None) -> Planner:
        """A planner over ``recipes`` (default: the stored ones) whose plans estimate from this engine's runs."""
        return Planner(recipes if recipes is not None else self.recipes(), engine=self)

    # -- history ---------------------------------------------------------------

    def estimate_recipe(self, recipe_id: str) -> Estimate:
        """Medians over the recipe's latest succeeded runs (up to 100), or an estimate saying "no history"."""
        return self._loop.run(self._estimate_recipe(recipe_id))

    async def _estimate_recipe(self, recipe_id: str) -> Estimate:
        where = RunFilter(status="succeeded", recipe=recipe_id)
        rows = await self._store.list_runs(self.namespace, where, HISTORY_RUNS, None)
        rows = [r for r in rows if r.started_at is not None and r.finished_at is not None]
        usage = await table.usage_of_runs(self._store, self.namespace, [r.id for r in rows])
        logged = self._store.record_events  # without the event log, LLM calls are unknown
        history = []
        for row in rows:
            used = usage.get(row.id)
            calls = (used.calls if used else 0) if logged else None
            history.append(
                RunHistory(
                    duration_seconds=(row.finished_at or 0.0) - (row.started_at or 0.0),
                    llm_calls=calls,
                    cost=used.cost if used else None,
                )
            )
        return estimate_from(recipe_id, history)

    # -- starting plans --------------------------------------------------------

    def _plan_target(
        self, plan: Plan, input: Any, metadata: Mapping[str, Any] | None
    ) -> tuple[Workflow[Any, Any], Any, dict[str, Any]]:
        """What ``engine.start(plan, input)`` runs: the recipe's body, the input with defaults, the recipe mark."""
        recipe = plan.recipe
        if plan.engine is None:
            plan.engine = self
        plan.validate()
        if input is not None and input is not plan.input:
            given = recipe.with_defaults(input_data(input))
            if json.dumps(given, sort_keys=True, default=str) != json.dumps(
                input_data(plan.input), sort_keys=True, default=str
            ):
                raise PlanError(
                    f"this plan (recipe '{recipe.id}') was made for another input; plan again for this input, "
                    "or start it with plan.input",
                    details={"recipe": recipe.id},
                )
        body = recipe.body
        workflow = body if isinstance(body, Workflow) else self.compile_document(body)
        mark = recipe_mark(recipe.id, recipe.variant, recipe.workflow, plan.skip_steps)
        return workflow, plan.input, {**(metadata or {}), RECIPE_KEY: mark}
