"""Estimates of a recipe's runs from the history of its finished runs: medians, never guesses."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RunHistory:
    """What one succeeded run of a recipe cost: its duration, and its LLM usage when recorded."""

    duration_seconds: float
    llm_calls: int | None = None
    cost: float | None = None


@dataclass(frozen=True)
class Estimate:
    """What a run of ``recipe`` is likely to take, from the last ``runs`` succeeded runs of it.

    With no history every figure is None and ``note`` says "no history".
    ``p50_cost`` is None when no run recorded a cost (``ctx.record_usage(cost=...)``);
    ``p50_llm_calls`` is None when the event log is off.
    """

    recipe: str
    runs: int
    p50_duration_seconds: float | None
    p50_cost: float | None
    p50_llm_calls: float | None
    note: str

    @property
    def has_history(self) -> bool:
        return self.runs > 0


def estimate_from(recipe_id: str, history: Sequence[RunHistory]) -> Estimate:
    """The medians of ``history`` (the succeeded runs of the recipe, newest first)."""
    if not history:
        return Estimate(recipe_id, 0, None, None, None, f"no history: no succeeded run of recipe '{recipe_id}' yet")
    costs = [h.cost for h in history if h.cost is not None]
    calls = [h.llm_calls for h in history if h.llm_calls is not None]
    note = f"medians of the last {len(history)} succeeded runs"
    if not costs:
        note += "; no cost recorded"
    return Estimate(
        recipe=recipe_id,
        runs=len(history),
        p50_duration_seconds=statistics.median(h.duration_seconds for h in history),
        p50_cost=statistics.median(costs) if costs else None,
        p50_llm_calls=statistics.median(calls) if calls else None,
        note=note,
    )
