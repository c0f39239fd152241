"""The rule-based planner: picks a recipe for an input and turns hints into a plan."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from plait.documents.model import short
from plait.errors import NoRecipeMatched, PlanError
from plait.planning.plan import Plan, PlanConstraints, PlanHints
from plait.planning.recipes import Recipe, Recipes, input_data
from plait.planning.skips import body_steps, check_skips

if TYPE_CHECKING:
    from plait.engine_planning import PlanningMixin


@dataclass(frozen=True)
class Candidate:
    """How one recipe fared: the conditions that held and failed, and why it won or lost."""

    recipe: str
    variant: str
    priority: int
    matched: list[str]
    failed: list[str]
    outcome: str


@dataclass(frozen=True)
class Selection:
    """The chosen ``recipe``, the ``reason`` in words, its ``matched`` conditions, and every ``candidates``."""

    recipe: Recipe
    reason: str
    matched: list[str]
    candidates: list[Candidate] = field(default_factory=list)


def _rank(recipe: Recipe) -> tuple[int, int, str]:
    # Highest priority first; on a tie the more specific recipe (more conditions), then the id.
    return (-recipe.priority, -len(recipe.conditions), recipe.id)


class Planner:
    """Chooses among ``recipes``; with ``engine`` its plans can estimate from run history."""

    def __init__(self, recipes: Recipes, *, engine: PlanningMixin | None = None) -> None:
        if not isinstance(recipes, Recipes):
            raise PlanError(f"Planner() takes plait.Recipes, got {type(recipes).__name__}")
        self.recipes = recipes
        self.engine = engine

    def select(
        self,
        workflow: str,
        input: Any,
        hints: PlanHints | None = None,
        constraints: PlanConstraints | Mapping[str, Any] | None = None,
    ) -> Selection:
        """The highest-priority recipe of ``workflow`` whose conditions all hold on ``input``.

        A preferred variant (``hints.prefer_variant``) wins when its conditions
        hold; the reason says so, or says why it could not be used. Raises
        NoRecipeMatched (listing every candidate and its failed conditions) when
        none holds, and PlanError for a hint naming an unknown variant.
        """
        hints = hints or PlanHints()
        limits = PlanConstraints.of(constraints)
        recipes = sorted(self.recipes.for_workflow(workflow), key=_rank)
        if not recipes:
            known = ", ".join(self.recipes.workflows()) or "none"
            raise NoRecipeMatched(
                f"workflow {short(workflow)} has no recipes (workflows with recipes: {known}); add one with "
                "Recipes.add(plait.Recipe(...))",
                details={"workflow": short(workflow), "candidates": []},
            )
        if hints.prefer_variant is not None:
            self.recipes.variant(workflow, hints.prefer_variant)  # PlanError for an unknown variant
        data = input_data(input)
        failed = {r.id: [c.explain(data) for c in r.failed_conditions(data)] for r in recipes}
        missing_tags = {r.id: sorted(set(limits.require_tags) - set(r.tags)) for r in recipes}
        eligible = [r for r in recipes if not failed[r.id] and not missing_tags[r.id]]
        if not eligible:
            raise self._no_match(workflow, recipes, failed, missing_tags, data)
        chosen = eligible[0]
        note = ""
        if hints.prefer_variant is not None:
            preferred = next(r for r in recipes if r.variant == hints.prefer_variant)
            if preferred in eligible:
                chosen = preferred
                note = "; preferred by hint"
            else:
                why = "; ".join(failed[preferred.id]) or f"it lacks tags {missing_tags[preferred.id]}"
                note = f"; preferred variant '{preferred.variant}' was not used: {why}"
        matched = [c.describe() for c in chosen.conditions]
        held = f"its conditions hold ({', '.join(matched)})" if matched else "it has no conditions"
        reason = f"recipe '{chosen.id}' (variant '{chosen.variant}', priority {chosen.priority}): {held}{note}"
        candidates = [self._candidate(r, chosen, failed[r.id], missing_tags[r.id], data) for r in recipes]
        return Selection(recipe=chosen, reason=reason, matched=matched, candidates=candidates)

    def plan(
        self,
        workflow: str,
        input: Any,
        hints: PlanHints | None = None,
        constraints: PlanConstraints | Mapping[str, Any] | None = None,
    ) -> Plan:
        """Select a recipe, apply ``hints`` and validate the result; raises PlanError (or NoRecipeMatched).

        ``hints.skip_steps`` marks steps skipped; one naming no step of the
        chosen recipe, or whose output a later step needs, is refused.
        """
        hints = hints or PlanHints()
        selection = self.select(workflow, input, hints, constraints)
        recipe = selection.recipe
        skip = list(dict.fromkeys(hints.skip_steps))
        check_skips(recipe.body, skip)
        data = input_data(input)
        full_input = recipe.with_defaults(data)
        modifications: list[str] = []
        if isinstance(data, Mapping):
            filled = sorted(k for k in recipe.defaults if k not in data)
            if filled:
                modifications.append(f"defaults filled in: {', '.join(filled)}")
        modifications += [f"skip step '{s}' (hint)" for s in skip]
        steps = [s if s.id not in skip else type(s)(s.id, s.kind, True) for s in body_steps(recipe.body)]
        reasoning = [selection.reason]
        reasoning += [f"'{c.recipe}' not chosen: {c.outcome}" for c in selection.candidates if c.recipe != recipe.id]
        plan = Plan(
            recipe=recipe,
            input=full_input if full_input is not data else input,
            steps=steps,
            modifications=modifications,
            reasoning=reasoning,
            selection=selection,
            engine=self.engine,
        )
        plan.validate()
        return plan

    def _candidate(
        self, recipe: Recipe, chosen: Recipe, failed: list[str], missing_tags: list[str], data: Any
    ) -> Candidate:
        matched = [c.describe() for c in recipe.conditions if c.holds(data)]
        if recipe is chosen:
            outcome = "chosen"
        elif failed:
            outcome = "conditions failed: " + "; ".join(failed)
        elif missing_tags:
            outcome = f"lacks required tags {missing_tags}"
        elif recipe.priority < chosen.priority:
            outcome = f"lower priority ({recipe.priority} < {chosen.priority} of '{chosen.id}')"
        elif recipe.priority == chosen.priority and len(recipe.conditions) < len(chosen.conditions):
            outcome = f"same priority as '{chosen.id}', which is more specific (more conditions)"
        elif recipe.priority > chosen.priority or _rank(recipe) > _rank(chosen):
            outcome = f"'{chosen.id}' was the preferred variant"
        else:
            outcome = f"same priority and specificity as '{chosen.id}', which comes first by id"
        return Candidate(recipe.id, recipe.variant, recipe.priority, matched, failed, outcome)

    def _no_match(
        self,
        workflow: str,
        recipes: list[Recipe],
        failed: dict[str, list[str]],
        missing_tags: dict[str, list[str]],
        data: Any,
    ) -> NoRecipeMatched:
        lines = []
        for r in recipes:
            why = "; ".join(failed[r.id]) if failed[r.id] else f"lacks required tags {missing_tags[r.id]}"
            lines.append(f"'{r.id}' ({why})")
        return NoRecipeMatched(
            f"no recipe of workflow '{workflow}' holds on this input: {', '.join(lines)}; change the input or add "
            "a recipe without conditions (a default)",
            details={
                "workflow": workflow,
                "candidates": [
                    {"recipe": r.id, "variant": r.variant, "failed": failed[r.id], "missing_tags": missing_tags[r.id]}
                    for r in recipes
                ],
            },
        )
