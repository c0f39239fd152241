"""Stored completion triggers (``engine.on_complete``), in portable SQL over any store.

Stored so that every worker of the namespace fires them, also one whose
process never declared the trigger.
"""

from __future__ import annotations

import asyncio
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


async def for_sources(store: Store, namespace: str, source_workflow_ids: list[str]) -> list[TriggerRow]:
    """The stored triggers whose source is one of ``source_workflow_ids``."""
    marks = ", ".join("?" * len(source_workflow_ids))
    rows = await store.sql(
        f"SELECT {COLUMNS} FROM plait_triggers WHERE namespace = ? AND source_workflow_id IN ({marks}) ORDER BY id",
        (namespace, *source_workflow_ids),
    )
    return [_row(row) for row in rows]


class SourceReads:
    """The stored triggers of a run's source, read for many runs ending at once in one statement.

    A run reads its source's triggers just before it ends. When many end together (a wave of timers),
    a caller asking while a read is in flight, or in the same turn of the loop as others, waits for the
    next read, which begins after that one ends: it sees every trigger stored before it asked, as a read
    of its own would, and the wave costs a few statements instead of one per run. A run ending alone
    reads at once, without a task and a turn of the loop.
    """

    def __init__(self, store: Store, namespace: str) -> None:
        self._store = store
        self._namespace = namespace
        self._asked: dict[str, list[asyncio.Future[list[TriggerRow]]]] = {}
        self._reading = False
        self._reader: asyncio.Task[None] | None = None  # held: the loop keeps only a weak reference to a task

    async def for_source(self, source_workflow_id: str, *, alone: bool = False) -> list[TriggerRow]:
        """The triggers of ``source_workflow_id``; ``alone`` when no other run can end meanwhile here."""
        if alone and not self._reading:
            self._reading = True
            try:
                return await for_sources(self._store, self._namespace, [source_workflow_id])
            finally:
                self._read_next()
        future: asyncio.Future[list[TriggerRow]] = asyncio.get_running_loop().create_future()
        self._asked.setdefault(source_workflow_id, []).append(future)
        if not self._reading:
            self._read_next()  # a task: those asking in this turn of the loop join its read
        return await future

    def _read_next(self) -> None:
        """A read ended: read for those who asked meanwhile, or let the next caller read at once."""
        self._reading = bool(self._asked)
        if self._reading:
            self._reader = asyncio.get_running_loop().create_task(self._read_asked(), name="plait-trigger-reads")

    async def _read_asked(self) -> None:
        asked, self._asked = self._asked, {}
        try:
            rows = await for_sources(self._store, self._namespace, sorted(asked))
        except asyncio.CancelledError:  # the engine shuts down: nobody is left waiting forever
            for futures in (*asked.values(), *self._asked.values()):
                for future in futures:
                    future.cancel()
            self._asked = {}
            self._reading = False
            raise
        except Exception as exc:  # noqa: BLE001 - each caller raises it, as its own read would
            for futures in asked.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
        else:
            for source, futures in asked.items():
                found = [row for row in rows if row.source_workflow_id == source]
                for future in futures:
                    if not future.done():
                        future.set_result(found)
        self._read_next()


async def listed(store: Store, namespace: str) -> list[TriggerRow]:
    rows = await store.sql(f"SELECT {COLUMNS} FROM plait_triggers WHERE namespace = ? ORDER BY id", (namespace,))
    return [_row(row) for row in rows]


async def remove(store: Store, namespace: str, trigger_id: str) -> bool:
    rows = await store.sql(
        "DELETE FROM plait_triggers WHERE namespace = ? AND id = ? RETURNING id", (namespace, trigger_id), write=True
    )
    return bool(rows)
