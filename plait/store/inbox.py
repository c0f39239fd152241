"""Reads of a run's event inbox, in portable SQL over any store."""

from __future__ import annotations

from plait.store.base import Store


async def event_uses(store: Store, namespace: str, run_id: str, name: str) -> tuple[set[str], int]:
    """For event ``name`` of a run: the step keys that consumed one, and how many wait unconsumed."""
    rows = await store.sql(
        "SELECT consumed_by FROM plait_inbox WHERE namespace = ? AND run_id = ? AND name = ?", (namespace, run_id, name)
    )
    consumed = {str(key) for (key,) in rows if key is not None}
    return consumed, sum(1 for (key,) in rows if key is None)
