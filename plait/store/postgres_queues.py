"""Queue limits on PostgreSQL: which queues limit their runs, how loaded they are, and the slots steps hold."""

from __future__ import annotations

from dataclasses import replace

from plait.queues import Queue, QueueLoad, queue_from_row, queue_row, rate_window
from plait.store.base import (
    SLOT_RETRY_SECONDS,
    NewRun,
)
from plait.store.postgres_connection import Cursor, PostgresConnection


class PostgresQueues(PostgresConnection):
    """The queue part of ``PostgresStore``."""

    async def _claimable_at_create(self, run: NewRun) -> NewRun:
        """``run`` created pending instead of claimed when its queue has limits: only ``claim_runs`` applies them.

        Read before the write: limits change only when a queue is registered, not per run.
        """
        if run.owner is None or run.queue is None:
            return run
        rows = await self._read(
            "SELECT name, concurrency, rate_count, rate_period, key_concurrency, priority FROM plait_queues "
            "WHERE name = %s",
            (run.queue,),
        )
        queue = queue_from_row(rows[0]) if rows else None
        if queue is None or not queue.orders_claims:
            return run
        return replace(run, owner=None, lease_expires_at=None)

    @staticmethod
    async def _limited_queues(cursor: Cursor, names: set[str | None], *, lock: bool) -> dict[str, Queue]:
        """The limits of these queues; ``lock`` serializes claims on them across workers until commit."""
        wanted = sorted(n for n in names if n)
        if not wanted:
            return {}
        await cursor.execute(
            "SELECT name, concurrency, rate_count, rate_period, key_concurrency, priority FROM plait_queues "
            f"WHERE name = ANY(%s) ORDER BY name{' FOR UPDATE' if lock else ''}",
            (wanted,),
        )
        queues = {row[0]: queue_from_row(row) for row in await cursor.fetchall()}
        return {name: queue for name, queue in queues.items() if queue.orders_claims}

    @staticmethod
    async def _queue_load(cursor: Cursor, queue: Queue, now: float, wall_now: float) -> QueueLoad:
        await cursor.execute(
            "SELECT concurrency_key, count(*) FROM plait_runs WHERE queue = %s AND status = 'running' "
            "AND lease_expires_at >= %s GROUP BY concurrency_key",
            (queue.name, wall_now),
        )
        running = await cursor.fetchall()
        recent, oldest = 0, None
        if queue.rate_period is not None:
            forget, count_after = rate_window(now, queue.rate_period)
            await cursor.execute(
                "DELETE FROM plait_queue_starts WHERE queue = %s AND started_at <= %s", (queue.name, forget)
            )
            await cursor.execute(
                "SELECT count(*), min(started_at) FROM plait_queue_starts WHERE queue = %s AND started_at > %s",
                (queue.name, count_after),
            )
            row = await cursor.fetchone()
            if row is not None:
                recent, oldest = int(row[0]), row[1]
        by_key = {str(key): int(count) for key, count in running if key is not None}
        return QueueLoad(sum(int(count) for _, count in running), by_key, recent, oldest)

    async def register_queues(self, queues: list[Queue]) -> None:
        if not queues:
            return

        async def register(cursor: Cursor) -> None:
            await cursor.executemany(
                "INSERT INTO plait_queues (name, concurrency, rate_count, rate_period, key_concurrency, priority) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
                "concurrency = EXCLUDED.concurrency, rate_count = EXCLUDED.rate_count, "
                "rate_period = EXCLUDED.rate_period, key_concurrency = EXCLUDED.key_concurrency, "
                "priority = EXCLUDED.priority",
                [queue_row(q) for q in queues],
            )

        await self._write(register)

    async def acquire_slot(
        self, queue: str, holder: str, run_id: str, now: float, wall_now: float, expires_at: float
    ) -> float | None:
        async def acquire(cursor: Cursor) -> float | None:
            spec = (await self._limited_queues(cursor, {queue}, lock=True)).get(queue)
            if spec is None:
                return None
            await cursor.execute("DELETE FROM plait_slots WHERE queue = %s AND expires_at < %s", (queue, wall_now))
            await cursor.execute("SELECT count(*) FROM plait_slots WHERE queue = %s AND holder != %s", (queue, holder))
            held = await cursor.fetchone()
            if spec.concurrency is not None and held is not None and held[0] >= spec.concurrency:
                return SLOT_RETRY_SECONDS
            if spec.rate_count is not None and spec.rate_period is not None:
                load = await self._queue_load(cursor, spec, now, wall_now)
                if load.recent_starts >= spec.rate_count:
                    oldest = now if load.oldest_start is None else load.oldest_start
                    return max(SLOT_RETRY_SECONDS, oldest + spec.rate_period - now)
                await cursor.execute("INSERT INTO plait_queue_starts (queue, started_at) VALUES (%s, %s)", (queue, now))
            await cursor.execute(
                "INSERT INTO plait_slots (queue, holder, run_id, acquired_at, expires_at) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (queue, holder) DO UPDATE SET acquired_at = EXCLUDED.acquired_at, "
                "expires_at = EXCLUDED.expires_at",
                (queue, holder, run_id, now, expires_at),
            )
            return None

        return await self._write(acquire)

    async def release_slot(self, queue: str, holder: str) -> None:
        await self._read("DELETE FROM plait_slots WHERE queue = %s AND holder = %s RETURNING 1", (queue, holder))
