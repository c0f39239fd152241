"""Queue limits on SQLite: which queues limit their runs, how loaded they are, and the slots steps hold.

Claims (``claim_runs``) and run creation read these inside their own transactions.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

from plait.queues import Queue, QueueLoad, queue_from_row, queue_row, rate_window
from plait.store.base import SLOT_RETRY_SECONDS, NewRun
from plait.store.sqlite_connection import SQLiteConnection


class SQLiteQueues(SQLiteConnection):
    """The queue part of ``SQLiteStore``."""

    def _claimable_at_create(self, run: NewRun) -> NewRun:
        """``run`` created pending instead of claimed when its queue has limits: only ``claim_runs`` applies them.

        Read before the write: limits change only when a queue is registered, not per run.
        """
        if run.owner is None or run.queue is None:
            return run
        rows = self._read(
            "SELECT name, concurrency, rate_count, rate_period, key_concurrency, priority FROM plait_queues "
            "WHERE name = ?",
            (run.queue,),
        )
        queue = queue_from_row(rows[0]) if rows else None
        if queue is None or not queue.orders_claims:
            return run
        return replace(run, owner=None, lease_expires_at=None)

    @staticmethod
    def _limited_queues(conn: sqlite3.Connection, names: set[str | None]) -> dict[str, Queue]:
        if not names:
            return {}
        rows = conn.execute(
            "SELECT name, concurrency, rate_count, rate_period, key_concurrency, priority FROM plait_queues "
            "WHERE name IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(n for n in names if n)),),
        ).fetchall()
        queues = {row[0]: queue_from_row(row) for row in rows}
        return {name: queue for name, queue in queues.items() if queue.orders_claims}

    @staticmethod
    def _queue_load(conn: sqlite3.Connection, queue: Queue, now: float, wall_now: float) -> QueueLoad:
        running = conn.execute(
            "SELECT concurrency_key, count(*) FROM plait_runs WHERE queue = ? AND status = 'running' "
            "AND lease_expires_at >= ? GROUP BY concurrency_key",
            (queue.name, wall_now),
        ).fetchall()
        recent, oldest = 0, None
        if queue.rate_period is not None:
            forget, count_after = rate_window(now, queue.rate_period)
            conn.execute("DELETE FROM plait_queue_starts WHERE queue = ? AND started_at <= ?", (queue.name, forget))
            recent, oldest = conn.execute(
                "SELECT count(*), min(started_at) FROM plait_queue_starts WHERE queue = ? AND started_at > ?",
                (queue.name, count_after),
            ).fetchone()
        by_key = {str(key): count for key, count in running if key is not None}
        return QueueLoad(sum(count for _, count in running), by_key, int(recent), oldest)

    async def register_queues(self, queues: list[Queue]) -> None:
        def register(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR REPLACE INTO plait_queues (name, concurrency, rate_count, rate_period, key_concurrency, "
                "priority) VALUES (?, ?, ?, ?, ?, ?)",
                [queue_row(q) for q in queues],
            )

        if queues:
            await self._write(register)

    async def acquire_slot(
        self, queue: str, holder: str, run_id: str, now: float, wall_now: float, expires_at: float
    ) -> float | None:
        def acquire(conn: sqlite3.Connection) -> float | None:
            limited = self._limited_queues(conn, {queue})
            spec = limited.get(queue)
            if spec is None:
                return None
            conn.execute("DELETE FROM plait_slots WHERE queue = ? AND expires_at < ?", (queue, wall_now))
            held = conn.execute(
                "SELECT count(*) FROM plait_slots WHERE queue = ? AND holder != ?", (queue, holder)
            ).fetchone()[0]
            if spec.concurrency is not None and held >= spec.concurrency:
                return SLOT_RETRY_SECONDS
            if spec.rate_count is not None and spec.rate_period is not None:
                load = self._queue_load(conn, spec, now, wall_now)
                if load.recent_starts >= spec.rate_count:
                    oldest = now if load.oldest_start is None else load.oldest_start
                    return max(SLOT_RETRY_SECONDS, oldest + spec.rate_period - now)
                conn.execute("INSERT INTO plait_queue_starts (queue, started_at) VALUES (?, ?)", (queue, now))
            conn.execute(
                "INSERT OR REPLACE INTO plait_slots (queue, holder, run_id, acquired_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (queue, holder, run_id, now, expires_at),
            )
            return None

        return await self._write(acquire)

    async def release_slot(self, queue: str, holder: str) -> None:
        def release(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM plait_slots WHERE queue = ? AND holder = ?", (queue, holder))

        await self._write(release)
