"""Stored recipes (document-bodied, so every process can run them) and the LLM usage of runs, in portable SQL."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from plait.store.base import Store


@dataclass(frozen=True)
class RecipeRow:
    namespace: str
    id: str
    body: str
    updated_at: float


async def save(store: Store, row: RecipeRow) -> None:
    """Insert the recipe or replace the stored one with the same id."""
    await store.sql(
        "INSERT INTO plait_recipes (namespace, id, body, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (namespace, id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        (row.namespace, row.id, row.body, row.updated_at),
        write=True,
    )


async def delete(store: Store, namespace: str, recipe_id: str) -> bool:
    rows = await store.sql(
        "DELETE FROM plait_recipes WHERE namespace = ? AND id = ? RETURNING id", (namespace, recipe_id), write=True
    )
    return bool(rows)


async def every(store: Store, namespace: str) -> list[RecipeRow]:
    rows = await store.sql(
        "SELECT namespace, id, body, updated_at FROM plait_recipes WHERE namespace = ? ORDER BY id", (namespace,)
    )
    return [RecipeRow(*row) for row in rows]


@dataclass(frozen=True)
class RunUsage:
    """The LLM usage one run recorded: how many calls, and their summed cost (None when none had a cost)."""

    calls: int
    cost: float | None


async def usage_of_runs(store: Store, namespace: str, run_ids: Sequence[str]) -> dict[str, RunUsage]:
    """The ``step.usage`` events of each run, summed; runs with none are absent."""
    if not run_ids:
        return {}
    marks = ", ".join("?" for _ in run_ids)
    rows = await store.sql(
        f"SELECT run_id, payload FROM plait_events WHERE namespace = ? AND type = 'step.usage' AND run_id IN ({marks})",
        (namespace, *run_ids),
    )
    found: dict[str, RunUsage] = {}
    for run_id, payload in rows:
        try:
            cost = json.loads(payload or "{}").get("cost")
        except (ValueError, AttributeError):
            cost = None
        known = found.get(run_id, RunUsage(0, None))
        total = known.cost
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            total = (total or 0.0) + float(cost)
        found[run_id] = RunUsage(known.calls + 1, total)
    return found
