"""A plan: the recipe chosen for an input, its steps (some skipped), and why; runnable by the engine."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from plait.documents.model import WorkflowDocument, short
from plait.documents.schemas import codec_for
from plait.errors import PlanError
from plait.planning.estimate import Estimate
from plait.planning.recipes import Recipe
from plait.planning.skips import PlanStep, body_steps, check_skips

if TYPE_CHECKING:
    from plait.engine_planning import PlanningMixin
    from plait.planning.planner import Selection


@dataclass(frozen=True)
class PlanHints:
    """What the caller would like: a variant to prefer (when its conditions hold) and steps to skip."""

    prefer_variant: str | None = None
    skip_steps: Iterable[str] = ()

    def __post_init__(self) -> None:
        if isinstance(self.skip_steps, str):
            raise PlanError(f"skip_steps is a list of step ids, got the string {short(self.skip_steps)}")
        object.__setattr__(self, "skip_steps", tuple(self.skip_steps))


@dataclass(frozen=True)
class PlanConstraints:
    """Limits on the choice: only recipes carrying every tag in ``require_tags`` may be chosen."""

    require_tags: Iterable[str] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "require_tags", tuple(str(t) for t in self.require_tags))

    @classmethod
    def of(cls, value: PlanConstraints | Mapping[str, Any] | None) -> PlanConstraints:
        if value is None:
            return cls()
        if isinstance(value, PlanConstraints):
            return value
        unknown = set(value) - {"require_tags"}
        if unknown:
            raise PlanError(f"unknown constraints {sorted(map(str, unknown))[:5]}: the known one is require_tags")
        return cls(**value)


@dataclass
class Plan:
    """The recipe chosen for ``input``, its ``steps`` (skipped ones marked), the ``modifications`` made
    to the recipe (defaults filled in, steps skipped) and the ``reasoning`` behind the choice.

    Run it with ``engine.start(plan)``: the run records the recipe and variant,
    and the skipped steps are recorded ``skipped``, handing their input on.
    """

    recipe: Recipe
    input: Any
    steps: list[PlanStep]
    modifications: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    selection: Selection | None = None
    engine: PlanningMixin | None = field(default=None, repr=False, compare=False)

    @property
    def workflow(self) -> str:
        return self.recipe.workflow

    @property
    def variant(self) -> str:
        return self.recipe.variant

    @property
    def skip_steps(self) -> list[str]:
        return [s.id for s in self.steps if s.skipped]

    def validate(self) -> None:
        """Check the plan can run: its skips are allowed and its input fits the body; raises PlanError.

        With an engine, a document body is compiled too (DocumentInvalid lists its problems).
        """
        body = self.recipe.body
        known = [s.id for s in body_steps(body)]
        if [s.id for s in self.steps] != known:
            raise PlanError(
                f"the plan's steps do not match the body of recipe '{self.recipe.id}'; plan it again",
                details={"recipe": self.recipe.id},
            )
        check_skips(body, self.skip_steps)
        if isinstance(body, WorkflowDocument):
            codec = self.engine.compile_document(body).input_codec if self.engine else codec_for(body.input)
        else:
            codec = body.input_codec
        try:
            codec.validate(self.input)
        except ValidationError as exc:
            problems = exc.errors(include_url=False, include_input=False)
            raise PlanError(
                f"the input does not fit recipe '{self.recipe.id}' (body '{body.id}'): {exc.error_count()} "
                "problem(s); fix the input or the recipe's defaults",
                details={"recipe": self.recipe.id, "problems": [{k: str(v) for k, v in p.items()} for p in problems]},
            ) from None

    def estimate(self, engine: PlanningMixin | None = None) -> Estimate:
        """Medians from the recipe's succeeded runs (duration, cost, LLM calls), or "no history"."""
        source = engine or self.engine
        if source is None:
            raise PlanError(
                "an estimate reads the history of runs: make the planner with plait.Planner(recipes, engine=engine) "
                "or call plan.estimate(engine)"
            )
        return source.estimate_recipe(self.recipe.id)

    def describe(self) -> str:
        """The plan in a few lines, for logs and the CLI."""
        lines = [f"recipe '{self.recipe.id}' (variant '{self.variant}' of '{self.workflow}')"]
        lines += [f"  step {s.id}{' (skipped)' if s.skipped else ''}" for s in self.steps]
        lines += [f"  - {m}" for m in self.modifications]
        lines += [f"  because {r}" for r in self.reasoning]
        return "\n".join(lines)
