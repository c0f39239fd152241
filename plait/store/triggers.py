"""Stored completion triggers (``engine.on_complete``), in portable SQL over any store.

Stored so that every worker of the namespace fires them, also one whose
process never declared the trigger.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from plait.store.base import Store

COLUMNS = "namespace, id, source_workflow_id, target_workflow_id, statuses, has_input_from, created_at"


@dataclass(frozen=True)
class TriggerRow:
    namespace: str
    id: str
    source_workflow_id: str
    target_workflow_id: str
    statuses: tuple[str, ...]
    has_input_from: bool
    created_at: float


def _row(row: tuple[object, ...]) -> TriggerRow:
    namespace, id_, source, target, statuses, has_input_from, created = row
    return TriggerRow(
        str(namespace), str(id_), str(source), str(target), tuple(json.loads(str(statuses))),
        bool(has_input_from), float(str(created)),
    )  # fmt: skip


async def upsert(store: Store, row: TriggerRow) -> None:
    """Create the trigger, or replace its definition (apps declare their triggers at every start)."""
    await store.sql(
        f"INSERT INTO plait_triggers ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (namespace, id) DO UPDATE SET source_workflow_id = excluded.source_workflow_id, "
        "target_workflow_id = excluded.target_workflow_id, statuses = excluded.statuses, "
        "has_input_from = excluded.has_input_from",
        (
            row.namespace, row.id, row.source_workflow_id, row.target_workflow_id, json.dumps(list(row.statuses)),
            1 if row.has_input_from else 0, row.created_at,
        ),
        write=True,
    )  # fmt: skip


async def for_source(store: Store, namespace: str, source_workflow_id: str) -> list[TriggerRow]:
    rows = await store.sql(
        f"SELECT {COLUMNS} FROM plait_triggers WHERE namespace = ? AND source_workflow_id = ? ORDER BY id",
        (namespace, source_workflow_id),
    )
    return [_row(row) for row in rows]


async def listed(store: Store, namespace: str) -> list[TriggerRow]:
    rows = await store.sql(f"SELECT {COLUMNS} FROM plait_triggers WHERE namespace = ? ORDER BY id", (namespace,))
    return [_row(row) for row in rows]


async def remove(store: Store, namespace: str, trigger_id: str) -> bool:
    rows = await store.sql(
        "DELETE FROM plait_triggers WHERE namespace = ? AND id = ? RETURNING id", (namespace, trigger_id), write=True
    )
    return bool(rows)
