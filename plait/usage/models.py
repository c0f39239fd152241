"""What usage looks like to users: per-run and per-step totals, report rows, and budgets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

CostSource = Literal["given", "computed", "unknown"]

NANOS = 1_000_000_000  # costs are stored in billionths of a US dollar, so sums are exact


def cost_to_nanos(cost: float | None) -> int | None:
    return None if cost is None else round(cost * NANOS)


def nanos_to_cost(nanos: int | None) -> float | None:
    return None if nanos is None else int(nanos) / NANOS


class Usage(BaseModel):
    """Tokens, cost and number of model calls of a run or a step (``by_model`` splits them per model).

    ``input_tokens`` include cached input tokens. ``cost`` is the sum of the
    calls whose cost is known (None when no call's cost is known).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None
    calls: int = 0
    by_model: dict[str, Usage] = Field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class UsageRow(BaseModel):
    """One line of ``engine.usage(group_by=...)``: the totals of one workflow, model, day or step.

    ``unknown_cost_calls`` counts calls whose price was unknown (not in ``cost``).
    """

    group_by: str
    key: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost: float | None
    calls: int
    runs: int
    unknown_cost_calls: int


class Budget(BaseModel):
    """The most a run may spend; once its recorded totals reach a limit it starts no further step.

    ``on_exceed="fail"`` ends the run ``failed`` with ``BudgetExceeded``;
    ``"suspend"`` parks it ``suspended`` until ``engine.raise_budget``. A step
    already running finishes: the check is made before each step starts.
    """

    max_cost: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_tokens: int | None = Field(default=None, ge=0)
    on_exceed: Literal["fail", "suspend"] = "fail"

    def exceeded_by(self, tokens: int, cost: float) -> str | None:
        """Which limit totals of ``tokens`` and ``cost`` reach, described; None while within it."""
        if self.max_tokens is not None and tokens >= self.max_tokens:
            return f"{tokens} tokens reached max_tokens={self.max_tokens}"
        if self.max_cost is not None and cost >= self.max_cost:
            return f"cost {cost:.6g} reached max_cost={self.max_cost:g}"
        return None


@dataclass
class Totals:
    """A run's running totals, as its execution counts them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_nanos: int = 0
    calls: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens
