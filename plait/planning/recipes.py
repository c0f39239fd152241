"""Recipes: named variants of a workflow, each with conditions on the input and a priority."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import BaseModel

from plait.documents.conditions import MISSING, OPERATORS, UNARY, field_holds, lookup_field, pattern_problem
from plait.documents.model import WorkflowDocument, short
from plait.errors import PlanError
from plait.workflow.graph import Workflow

RECIPE_ID: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}$")
FIELD_PATH: Final = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
DEFAULT_VARIANT: Final = "default"

Body = Workflow[Any, Any] | WorkflowDocument


@dataclass(frozen=True)
class Condition:
    """``field <op> value`` on the run input: ``field`` is a dot path (``"options.depth"``, ``"rows.0"``).

    The operators are those of document ``when`` conditions (``eq``, ``neq``,
    ``gt``, ``gte``, ``lt``, ``lte``, ``contains``, ``matches``, ``exists``,
    ``not_exists``). A field missing from the input matches only ``not_exists``.
    Raises PlanError for an unknown operator, a malformed path or a bad pattern.
    """

    field: str
    op: str
    value: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.field, str) or not FIELD_PATH.match(self.field):
            raise PlanError(
                f"condition field {short(self.field)} is not a dot path of names (e.g. 'size' or 'options.depth')",
                details={"field": short(self.field)},
            )
        if self.op not in OPERATORS:
            raise PlanError(
                f"unknown condition operator {short(self.op)} on field '{self.field}': use one of "
                + ", ".join(OPERATORS),
                details={"field": self.field, "op": short(self.op), "operators": list(OPERATORS)},
            )
        problem = pattern_problem(self.op, self.value)
        if problem is not None:
            raise PlanError(f"condition on field '{self.field}': {problem}", details={"field": self.field})

    def holds(self, data: Any) -> bool:
        """Whether the condition holds on ``data`` (the input as JSON data)."""
        return field_holds(self.op, data, self.field, self.value)

    def describe(self) -> str:
        if self.op in UNARY:
            return f"{self.field} {self.op}"
        return f"{self.field} {self.op} {json.dumps(self.value, default=str)[:80]}"

    def explain(self, data: Any) -> str:
        """The condition and the value it saw, for reasons (``size eq "small" (got "large")``)."""
        seen = lookup_field(data, self.field)
        got = "nothing: the field is missing" if seen is MISSING else json.dumps(seen, default=str)[:80]
        return f"{self.describe()} (got {got})"

    def to_data(self) -> dict[str, Any]:
        return {"field": self.field, "op": self.op, "value": self.value}


def as_condition(value: Condition | Mapping[str, Any] | Sequence[Any]) -> Condition:
    """A Condition from itself, ``{"field", "op", "value"}`` or ``(field, op, value)``."""
    if isinstance(value, Condition):
        return value
    if isinstance(value, Mapping):
        unknown = set(value) - {"field", "op", "value"}
        if unknown or "field" not in value or "op" not in value:
            raise PlanError(
                f"a condition is {{'field', 'op', 'value'}}, got keys {sorted(map(str, value))[:10]}",
                details={"keys": sorted(map(str, value))[:10]},
            )
        return Condition(value["field"], value["op"], value.get("value"))
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) in (2, 3):
        return Condition(*value)
    raise PlanError(f"a condition is plait.Condition(field, op, value), got {short(value)}")


def input_data(value: Any) -> Any:
    """The input as JSON data, which conditions and defaults read."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


@dataclass(frozen=True)
class Recipe:
    """One variant of a logical workflow: a body to run, when it applies, and how much it is preferred.

    ``body`` is a committed workflow or a ``WorkflowDocument``. The planner picks
    the highest-``priority`` recipe whose ``conditions`` all hold on the input;
    ``defaults`` fill input fields the caller left out. ``tags`` are free labels
    for ``Recipes.query``.
    """

    id: str
    workflow: str
    variant: str
    body: Body
    conditions: Sequence[Condition] = ()
    priority: int = 0
    tags: Sequence[str] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        for name in ("id", "workflow", "variant"):
            value = getattr(self, name)
            if not isinstance(value, str) or not RECIPE_ID.match(value):
                raise PlanError(
                    f"recipe {name} {short(value)} is not valid: use 1 to 128 letters, digits, '_', '.', ':' "
                    "or '-', starting with a letter"
                )
        if not isinstance(self.body, Workflow | WorkflowDocument):
            raise PlanError(
                f"recipe '{self.id}': body must be a committed workflow or a plait.WorkflowDocument, "
                f"got {type(self.body).__name__}"
            )
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise PlanError(f"recipe '{self.id}': priority must be an integer, got {short(self.priority)}")
        if not isinstance(self.defaults, Mapping):
            raise PlanError(f"recipe '{self.id}': defaults must be a mapping of input fields")
        object.__setattr__(self, "conditions", tuple(as_condition(c) for c in self.conditions))
        object.__setattr__(self, "tags", tuple(str(t) for t in self.tags))
        object.__setattr__(self, "defaults", dict(self.defaults))

    @property
    def body_id(self) -> str:
        """The id of the workflow (or document) this recipe runs."""
        return self.body.id

    def failed_conditions(self, data: Any) -> list[Condition]:
        """The conditions that do not hold on ``data``."""
        return [c for c in self.conditions if not c.holds(data)]

    def with_defaults(self, data: Any) -> Any:
        """``data`` with this recipe's defaults under it (the caller's fields win)."""
        if self.defaults and isinstance(data, Mapping):
            return {**self.defaults, **data}
        return data


def recipe_to_data(recipe: Recipe) -> dict[str, Any]:
    """A document-bodied recipe as plain JSON data (how it is stored); PlanError for a code body."""
    if not isinstance(recipe.body, WorkflowDocument):
        raise PlanError(
            f"recipe '{recipe.id}' runs a code workflow, which cannot be stored: add it to plait.Recipes in every "
            "process, or give it a plait.WorkflowDocument body",
            details={"recipe": recipe.id},
        )
    return {
        "id": recipe.id,
        "workflow": recipe.workflow,
        "variant": recipe.variant,
        "body": recipe.body.to_data(),
        "conditions": [c.to_data() for c in recipe.conditions],
        "priority": recipe.priority,
        "tags": list(recipe.tags),
        "defaults": dict(recipe.defaults),
        "description": recipe.description,
    }


def recipe_from_data(data: Mapping[str, Any]) -> Recipe:
    """A recipe from ``recipe_to_data`` output; PlanError (or DocumentInvalid for the body) when malformed."""
    try:
        fields = dict(data)
        fields["body"] = WorkflowDocument.parse(fields["body"])
        return Recipe(**fields)
    except (KeyError, TypeError) as exc:
        raise PlanError(f"a stored recipe is malformed ({exc}); save it again with engine.save_recipe") from None


class Recipes:
    """The recipes a planner chooses from, by id and by (workflow, variant).

    ``add`` refuses a second recipe with the same id, or with the same workflow
    and variant (PlanError): a name must mean one thing.
    """

    def __init__(self, recipes: Iterable[Recipe] = ()) -> None:
        self._by_id: dict[str, Recipe] = {}
        self.add(*recipes)

    def add(self, *recipes: Recipe) -> Recipes:
        """Add recipes; returns self so calls chain."""
        for recipe in recipes:
            if not isinstance(recipe, Recipe):
                raise PlanError(f"Recipes.add() takes plait.Recipe, got {type(recipe).__name__}")
            known = self._by_id.get(recipe.id)
            if known is not None:
                if known == recipe:
                    continue
                raise PlanError(
                    f"two recipes have the id '{recipe.id}' (variants '{known.variant}' and '{recipe.variant}' "
                    f"of '{known.workflow}'); give each recipe its own id",
                    details={"recipe": recipe.id},
                )
            twin = self._find(recipe.workflow, recipe.variant)
            if twin is not None:
                raise PlanError(
                    f"recipes '{twin.id}' and '{recipe.id}' are both variant '{recipe.variant}' of workflow "
                    f"'{recipe.workflow}'; give one of them another variant",
                    details={"recipes": [twin.id, recipe.id], "variant": recipe.variant},
                )
            self._by_id[recipe.id] = recipe
        return self

    def _find(self, workflow: str, variant: str) -> Recipe | None:
        return next((r for r in self._by_id.values() if r.workflow == workflow and r.variant == variant), None)

    def get(self, recipe_id: str) -> Recipe | None:
        """The recipe with that id, if any."""
        return self._by_id.get(recipe_id)

    def for_workflow(self, workflow: str) -> list[Recipe]:
        """The recipes of ``workflow``, highest priority first (then by id)."""
        found = [r for r in self._by_id.values() if r.workflow == workflow]
        return sorted(found, key=lambda r: (-r.priority, r.id))

    def variant(self, workflow: str, variant: str) -> Recipe:
        """The recipe of ``workflow`` for ``variant``; raises PlanError naming the known variants."""
        found = self._find(workflow, variant)
        if found is None:
            known = ", ".join(self.variants(workflow)) or "none"
            raise PlanError(
                f"workflow '{workflow}' has no variant {short(variant)} (variants: {known})",
                details={"workflow": workflow, "variant": short(variant), "variants": self.variants(workflow)},
            )
        return found

    def default(self, workflow: str) -> Recipe | None:
        """The ``"default"`` variant of ``workflow``, if it has one."""
        return self._find(workflow, DEFAULT_VARIANT)

    def variants(self, workflow: str) -> list[str]:
        """The variant names of ``workflow``, highest priority first."""
        return [r.variant for r in self.for_workflow(workflow)]

    def workflows(self) -> list[str]:
        """Every workflow that has recipes."""
        return sorted({r.workflow for r in self._by_id.values()})

    def query(self, *, tags: Iterable[str] = (), workflow: str | None = None) -> list[Recipe]:
        """Recipes carrying every tag in ``tags`` (and of ``workflow`` when given), by workflow then priority."""
        wanted = set(tags)
        found = [
            r for r in self._by_id.values() if wanted <= set(r.tags) and (workflow is None or r.workflow == workflow)
        ]
        return sorted(found, key=lambda r: (r.workflow, -r.priority, r.id))

    def __iter__(self) -> Iterator[Recipe]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, recipe_id: object) -> bool:
        return recipe_id in self._by_id
