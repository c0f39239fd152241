"""PostgreSQL backend: psycopg 3 with a pool, ``FOR UPDATE SKIP LOCKED`` claims, LISTEN/NOTIFY wake-ups.

Every worker on every machine shares the work through these tables; the
database is the only coordination point. Row locks on the run serialize the
things that race (a claim, a step commit, an event, a park), so the
transactions stay short and nothing else is needed.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from plait.errors import StoreUnavailable
from plait.queues import Candidate, Queue, QueueLoad, choose_claims, queue_from_row, queue_row
from plait.store.base import (
    CLAIMABLE_STATUSES,
    SLOT_RETRY_SECONDS,
    STATE_EVENT_TYPES,
    TERMINAL_STATUSES,
    USAGE_COLUMNS,
    ArtifactRow,
    Decision,
    EventRow,
    Lease,
    NewEvent,
    NewRun,
    NewUsage,
    Park,
    RunFilter,
    RunRow,
    RunState,
    StepRow,
    WaitRow,
    claim_events,
    is_decision_open,
    lifecycle,
    stale_lease,
    usage_totals,
    usage_values,
)
from plait.store.postgres_group import GroupCommit
from plait.store.postgres_schema import MIGRATIONS
from plait.store.run_listing import run_filter_sql, run_listing_sql

try:
    import psycopg
    import psycopg.errors
    from psycopg import sql
    from psycopg.pq import ExecStatus
    from psycopg_pool import AsyncConnectionPool, PoolTimeout
except ImportError as missing:  # pragma: no cover - exercised only without the extra installed
    raise StoreUnavailable("PostgreSQL support needs psycopg: pip install 'plait[postgres]'") from missing

T = TypeVar("T")
TUPLES_OK = ExecStatus.TUPLES_OK
Cursor = psycopg.AsyncCursor[Any]

log = logging.getLogger("plait.store.postgres")

RUN_COLUMNS = (
    "id, namespace, workflow_id, workflow_version, status, input, output, error, idempotency_key, priority, "
    "metadata, parent_run_id, parent_step_key, status_message, created_at, updated_at, started_at, finished_at, "
    "ready_at, retried_at, owner, lease_token, wait_info, queue, concurrency_key, trace_context, "
    "usage_input_tokens, usage_output_tokens, usage_cost_nanos, usage_calls, budget, cancel_reason, config"
)
ARTIFACT_COLUMNS = "run_id, key, step_id, step_key, kind, content_type, size, data, blob, created_at, namespace"
EVENT_COLUMNS = "id, namespace, run_id, workflow_id, seq, type, step_id, step_key, attempt, payload, created_at"
STEP_COLUMNS = "run_id, step_key, step_id, attempt, status, input, output, error, started_at, finished_at"
WAIT_COLUMNS = "run_id, step_key, kind, wake_at, deadline, event_name, state, created_at"
CHANNEL = "plait_wakeup"
# How long the first connection may take before an engine reports the server unreachable.
CONNECT_TIMEOUT_SECONDS = 5
# How long one pooled connection stays pinned for single statements before it goes back to the pool.
PIN_SECONDS = 60.0
# Pooled connections a wave of fenced run writes (steps, ends) leaves to everything else: a claim or a
# read queued behind dozens of them would wait for all of them (the pool serves in turn).
RESERVED_CONNECTIONS = 2
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def split_schema(url: str, schema: str | None) -> tuple[str, str]:
    """The connection URL without plait's own ``?schema=`` parameter, and the schema to use."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    from_url = next((value for key, value in query if key == "schema"), None)
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    chosen = schema or from_url or "public"
    if _SCHEMA_NAME.fullmatch(chosen) is None:
        raise StoreUnavailable(f"invalid PostgreSQL schema name {chosen!r}: use lowercase letters, digits and '_'")
    return urlunsplit(parts._replace(query=rest)), chosen


class PostgresStore:
    """The ``Store`` on PostgreSQL; plait's tables live in ``schema`` (default ``public``)."""

    def __init__(self, url: str, *, schema: str | None = None, max_connections: int = 10) -> None:
        self.url, self.schema = split_schema(url, schema)
        self._pool = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=max_connections,
            open=False,
            kwargs={"autocommit": True},
            configure=self._configure,
            timeout=30.0,
        )
        # The connection single statements go through while it is free (see ``_connection``).
        self._pinned: psycopg.AsyncConnection[Any] | None = None
        self._pinned_busy = False
        self._pinned_at = 0.0
        self._listener: asyncio.Task[None] | None = None
        self._probed = False
        self.record_events = True
        self._wakeup: Callable[[], None] | None = None
        # At most all but ``RESERVED_CONNECTIONS`` pooled connections make fenced run writes at once, so a
        # claim or a read is never queued behind a whole wave of them.
        self._group = GroupCommit(
            self._connection,
            self._fenced_alone,
            asyncio.Semaphore(max(1, max_connections - RESERVED_CONNECTIONS)),
            _FENCE,
        )

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))

    async def _ensure_open(self) -> None:
        if self._pool.closed and not self._probed:
            await self._probe()
        try:
            await self._pool.open(wait=True, timeout=30.0)
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL at {self._where()}: {exc}") from exc

    async def _probe(self) -> None:
        """One direct connection first, so an unreachable server fails in seconds with its own reason.

        The pool would retry for its whole timeout and log every attempt instead.
        """
        try:
            conn = await psycopg.AsyncConnection.connect(self.url, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {self._where()}: {reason}. Check that the server runs and "
                "the URL (PLAIT_DATABASE_URL or --db) names it"
            ) from None
        await conn.close()
        self._probed = True

    def _where(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or "localhost"
        return f"{host}:{parts.port or 5432}{parts.path or ''}"

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        pinned, self._pinned = self._pinned, None
        if pinned is not None and not self._pinned_busy:
            await self._pool.putconn(pinned)
        await self._pool.close()

    @asynccontextmanager
    async def _cursor(self, *, write: bool) -> AsyncIterator[Cursor]:
        """A cursor in a transaction (``write``) or in autocommit; driver errors become StoreUnavailable."""
        try:
            async with self._pool.connection() as conn:
                if write:
                    async with conn.transaction(), conn.cursor() as cursor:
                        yield cursor
                else:
                    async with conn.cursor() as cursor:
                        yield cursor
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreUnavailable(f"PostgreSQL failed: {exc}") from exc

    async def _write(self, work: Callable[[Cursor], Awaitable[T]]) -> T:
        async with self._cursor(write=True) as cursor:
            return await work(cursor)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection for one autocommit statement: the pinned one while it is free, else one from the pool.

        The pool hands its idle connections round in turn; statements made one after another (a run's
        steps) all going through one connection, and so one server process, keep its prepared statements
        and caches warm.
        Any error hands the pinned connection back to the pool, which replaces it if it is broken.
        """
        if self._pinned_busy or self._pool.closed:
            async with self._pool.connection() as conn:
                yield conn
            return
        self._pinned_busy = True
        try:
            if self._pinned is None:
                self._pinned, self._pinned_at = await self._pool.getconn(), time.monotonic()
            conn = self._pinned
            try:
                yield conn
            except BaseException:
                if self._pinned is conn:
                    self._pinned = None
                await self._pool.putconn(conn)
                raise
            # Now and then (and when the store closed meanwhile) it goes back, so the pool's
            # max_lifetime and replacement of connections apply to it as to the others.
            if self._pinned is not conn or time.monotonic() - self._pinned_at > PIN_SECONDS:
                if self._pinned is conn:
                    self._pinned = None
                await self._pool.putconn(conn)
        finally:
            self._pinned_busy = False

    async def _read(self, query: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement in autocommit, so its own transaction: its rows ([] when it returns none)."""
        try:
            async with self._connection() as conn, conn.cursor() as cursor:
                await cursor.execute(query, params)
                # The result's status, not ``description``: that would describe every column first.
                result = cursor.pgresult
                return await cursor.fetchall() if result is not None and result.status == TUPLES_OK else []
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreUnavailable(f"PostgreSQL failed: {exc}") from exc

    async def _notify(self, cursor: Cursor, namespace: str) -> None:
        """Wake idle workers of this schema and namespace once the transaction commits."""
        await cursor.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{self.schema}/{namespace}"))

    # -- schema and wake-ups -------------------------------------------------

    async def migrate(self) -> None:
        await self._ensure_open()
        # Everyone who starts at once queues on one advisory lock; the first migrates, the rest see it done.
        lock_key = zlib.crc32(f"plait:{self.schema}".encode())

        async def apply(cursor: Cursor) -> None:
            await cursor.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
            await cursor.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            await cursor.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(self.schema)))
            await cursor.execute("CREATE TABLE IF NOT EXISTS plait_schema (version INTEGER NOT NULL)")
            await cursor.execute("SELECT max(version) FROM plait_schema")
            row = await cursor.fetchone()
            current = row[0] if row and row[0] else 0
            for version, script in enumerate(MIGRATIONS, start=1):
                if version > current:
                    await cursor.execute(script)
                    await cursor.execute("INSERT INTO plait_schema (version) VALUES (%s)", (version,))

        await self._write(apply)

    async def sql(self, query: str, params: Sequence[object] = (), *, write: bool = False) -> list[tuple[Any, ...]]:
        # One statement in autocommit is its own transaction, so reads and writes go the same way.
        return await self._read(query.replace("%", "%%").replace("?", "%s"), list(params))

    async def schema_version(self) -> int:
        rows = await self._read("SELECT max(version) FROM plait_schema")
        return int(rows[0][0] or 0)

    def set_concurrency_hint(self, active_runs: int) -> None:
        """Concurrent runs commit on their own pooled connections here: nothing to adjust."""

    def on_wakeup(self, callback: Callable[[], None]) -> None:
        self._wakeup = callback
        if self._listener is None:
            self._listener = asyncio.ensure_future(self._listen())

    async def _listen(self) -> None:
        """Call the wake-up callback on every NOTIFY for this schema; reconnect after outages."""
        mine = f"{self.schema}/"
        pause = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                    pause = 0.5
                    if self._wakeup:
                        self._wakeup()  # anything missed while disconnected
                    async for note in conn.notifies():
                        if note.payload.startswith(mine) and self._wakeup:
                            self._wakeup()
            except asyncio.CancelledError:
                raise
            except psycopg.Error as exc:
                log.warning("plait: PostgreSQL listener lost its connection (%s); retrying in %.1fs", exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10.0)

    # -- runs ----------------------------------------------------------------

    async def create_run(self, run: NewRun) -> tuple[RunRow, bool]:
        run = await self._claimable_at_create(run)
        status = "running" if run.owner else "pending"
        created = [lifecycle(run, "run.created", {"workflow_version": run.workflow_version}, run.created_at)]
        if run.owner:
            created.append(lifecycle(run, "run.started", None, run.created_at))
        events_sql, events_params = self._events_cte(created, "WHERE EXISTS (SELECT 1 FROM created)")
        rows = await self._read(
            "WITH created AS (INSERT INTO plait_runs (id, namespace, workflow_id, workflow_version, status, input, "
            "idempotency_key, priority, metadata, parent_run_id, parent_step_key, created_at, updated_at, "
            "started_at, ready_at, owner, lease_expires_at, lease_token, queue, concurrency_key, trace_context, "
            "budget, config) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            f"ON CONFLICT DO NOTHING RETURNING {RUN_COLUMNS}){events_sql} "
            "SELECT *, CASE WHEN created.owner IS NULL THEN pg_notify(%s, %s) END FROM created",
            (
                run.id, run.namespace, run.workflow_id, run.workflow_version, status, run.input,
                run.idempotency_key, run.priority, run.metadata, run.parent_run_id, run.parent_step_key,
                run.created_at, run.created_at, run.created_at if run.owner else None, run.ready_at,
                run.owner, run.lease_expires_at, 1 if run.owner else 0, run.queue, run.concurrency_key,
                run.trace_context, run.budget, run.config, *events_params, CHANNEL, f"{self.schema}/{run.namespace}",
            ),
        )  # fmt: skip
        if rows:
            return RunRow(*rows[0][:-1]), True
        existing = await self._read(
            f"SELECT {RUN_COLUMNS} FROM plait_runs WHERE namespace = %s AND (id = %s OR idempotency_key = %s) "
            "ORDER BY (id = %s) DESC LIMIT 1",
            (run.namespace, run.id, run.idempotency_key, run.id),
        )
        if not existing:  # the conflicting run was deleted meanwhile: let the caller try again
            raise StoreUnavailable(f"run {run.id} could not be created or found; try again")
        return RunRow(*existing[0]), False

    async def get_run(self, namespace: str, run_id: str) -> RunRow | None:
        rows = await self._read(
            f"SELECT {RUN_COLUMNS} FROM plait_runs WHERE id = %s AND namespace = %s", (run_id, namespace)
        )
        return RunRow(*rows[0]) if rows else None

    async def list_runs(
        self, namespace: str, where: RunFilter, limit: int, after: tuple[float, str] | None
    ) -> list[RunRow]:
        query, params = run_listing_sql(namespace, where, limit, after, "%s", RUN_COLUMNS)
        return [RunRow(*row) for row in await self._read(query, params)]

    async def count_runs(self, namespace: str, where: RunFilter) -> int:
        clauses, params = run_filter_sql(namespace, where, "%s")
        rows = await self._read(f"SELECT count(*) FROM plait_runs WHERE {' AND '.join(clauses)}", params)
        return int(rows[0][0])

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
        if queue is None or (not queue.is_limited and queue.priority):
            return run
        return replace(run, owner=None, lease_expires_at=None)

    async def has_ready_runs(self, namespace: str, refs: list[str], now: float, wall_now: float) -> bool:
        rows = await self._read(
            "SELECT 1 FROM plait_runs WHERE namespace = %s AND status = ANY(%s) AND ready_at <= %s "
            "AND (owner IS NULL OR lease_expires_at < %s) AND workflow_id || '@' || workflow_version = ANY(%s) "
            "LIMIT 1",
            (namespace, list(CLAIMABLE_STATUSES), now, wall_now, refs),
        )
        return bool(rows)

    async def claim_runs(
        self,
        namespace: str,
        owner: str,
        refs: list[str],
        now: float,
        wall_now: float,
        lease_until: float,
        limit: int,
        *,
        run_id: str | None = None,
        ready_by: float | None = None,
    ) -> list[RunRow]:
        if not refs or limit <= 0:
            return []
        horizon = now if ready_by is None else max(now, ready_by)
        # No read first (as SQLite does): a claim that finds nothing locks nothing here, and a read
        # first would queue for a pooled connection twice when the pool is busiest.
        only = "" if run_id is None else "AND id = %s "

        async def claim(cursor: Cursor) -> list[RunRow]:
            # SKIP LOCKED: workers claiming at the same moment take different runs instead of queueing.
            await cursor.execute(
                "SELECT id, queue, concurrency_key, priority, ready_at, started_at IS NULL, wait_info FROM plait_runs "
                "WHERE namespace = %s AND status = ANY(%s) AND ready_at <= %s "
                "AND (owner IS NULL OR lease_expires_at < %s) AND workflow_id || '@' || workflow_version = ANY(%s) "
                f"{only}ORDER BY priority DESC, ready_at, id LIMIT %s FOR UPDATE SKIP LOCKED",
                (
                    namespace,
                    list(CLAIMABLE_STATUSES),
                    horizon,
                    wall_now,
                    refs,
                    *([] if run_id is None else [run_id]),
                    limit * 4,
                ),
            )
            rows = await cursor.fetchall()
            candidates = [Candidate(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]
            waited = {r[0]: r[6] for r in rows}
            queues = await self._limited_queues(cursor, {c.queue for c in candidates if c.queue}, lock=True)
            # A queue's limits count starts when they happen: its runs are only claimed once due.
            candidates = [c for c in candidates if c.ready_at <= now or c.queue not in queues]
            load = {name: await self._queue_load(cursor, queue, now, wall_now) for name, queue in queues.items()}
            ids = choose_claims(candidates, queues, load, limit)
            if not ids:
                return []
            await cursor.execute(
                "UPDATE plait_runs SET status = 'running', owner = %s, lease_expires_at = %s, "
                "lease_token = lease_token + 1, started_at = coalesce(started_at, GREATEST(%s, ready_at)), "
                "status_message = NULL, wait_info = NULL, updated_at = %s "
                f"WHERE namespace = %s AND id = ANY(%s) RETURNING {RUN_COLUMNS}",
                (owner, lease_until, now, now, namespace, ids),
            )
            claimed = [RunRow(*row) for row in await cursor.fetchall()]
            first = {c.id for c in candidates if c.first_start}
            await self._insert_events(
                cursor,
                # A run claimed ahead starts (and its timer fires) at its ready_at, not at the claim.
                [e for r in claimed for e in claim_events(r, r.id in first, waited.get(r.id), max(now, r.ready_at))],
            )
            starts = [
                (c.queue, now)
                for c in candidates
                if c.id in ids and c.first_start and c.queue in queues and queues[c.queue].rate_limit is not None
            ]
            if starts:
                await cursor.executemany("INSERT INTO plait_queue_starts (queue, started_at) VALUES (%s, %s)", starts)
            order = {run_id: i for i, run_id in enumerate(ids)}
            return sorted(claimed, key=lambda r: order[r.id])

        return await self._write(claim)

    async def load_run_states(self, namespace: str, run_ids: list[str]) -> dict[str, RunState]:
        states = {run_id: RunState([], [], []) for run_id in run_ids}
        if not run_ids:
            return states
        async with self._cursor(write=False) as cursor:  # one connection for the three reads
            await cursor.execute(
                f"SELECT {STEP_COLUMNS} FROM plait_steps WHERE namespace = %s AND run_id = ANY(%s) "
                "ORDER BY started_at, step_key, attempt",
                (namespace, run_ids),
            )
            for row in await cursor.fetchall():
                states[row[0]].steps.append(StepRow(*row))
            await cursor.execute(
                f"SELECT {WAIT_COLUMNS} FROM plait_waits WHERE namespace = %s AND run_id = ANY(%s)",
                (namespace, run_ids),
            )
            for row in await cursor.fetchall():
                states[row[0]].waits.append(WaitRow(*row))
            if self.record_events:
                await cursor.execute(
                    f"SELECT {EVENT_COLUMNS} FROM plait_events WHERE namespace = %s AND run_id = ANY(%s) "
                    "AND type = ANY(%s) ORDER BY run_id, seq",
                    (namespace, run_ids, list(STATE_EVENT_TYPES)),
                )
                for row in await cursor.fetchall():
                    states[row[2]].events.append(EventRow(*row))
        return states

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
        return {name: queue for name, queue in queues.items() if queue.is_limited or not queue.priority}

    @staticmethod
    async def _queue_load(cursor: Cursor, queue: Queue, now: float, wall_now: float) -> QueueLoad:
        await cursor.execute(
            "SELECT concurrency_key, count(*) FROM plait_runs WHERE queue = %s AND status = 'running' "
            "AND lease_expires_at >= %s GROUP BY concurrency_key",
            (queue.name, wall_now),
        )
        running = await cursor.fetchall()
        recent = 0
        if queue.rate_period is not None:
            await cursor.execute(
                "DELETE FROM plait_queue_starts WHERE queue = %s AND started_at <= %s",
                (queue.name, now - queue.rate_period),
            )
            await cursor.execute("SELECT count(*) FROM plait_queue_starts WHERE queue = %s", (queue.name,))
            row = await cursor.fetchone()
            recent = int(row[0]) if row else 0
        by_key = {str(key): int(count) for key, count in running if key is not None}
        return QueueLoad(sum(int(count) for _, count in running), by_key, recent)

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
                    await cursor.execute("SELECT min(started_at) FROM plait_queue_starts WHERE queue = %s", (queue,))
                    oldest = await cursor.fetchone()
                    return max(SLOT_RETRY_SECONDS, float(oldest[0] if oldest else now) + spec.rate_period - now)
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

    async def release_owners(self, namespace: str, owners: list[str]) -> int:
        if not owners:
            return 0

        async def release(cursor: Cursor) -> int:
            await cursor.execute(
                "UPDATE plait_runs SET owner = NULL, lease_expires_at = NULL, status = 'pending' "
                "WHERE namespace = %s AND status = 'running' AND owner = ANY(%s)",
                (namespace, owners),
            )
            count = cursor.rowcount
            await self._notify(cursor, namespace)
            return count

        return await self._write(release)

    async def owners_on_host(self, namespace: str, host: str) -> list[str]:
        rows = await self._read(
            "SELECT DISTINCT owner FROM plait_runs WHERE namespace = %s AND status = 'running' "
            "AND starts_with(owner, %s)",
            (namespace, host + ":"),
        )
        return [row[0] for row in rows]

    async def heartbeat(self, namespace: str, owner: str, run_ids: list[str], lease_until: float) -> list[str]:
        async def beat(cursor: Cursor) -> list[str]:
            # Only runs this worker still executes: one it failed to hand back must expire.
            await cursor.execute(
                "UPDATE plait_runs SET lease_expires_at = %s WHERE namespace = %s AND owner = %s "
                "AND status = 'running' AND id = ANY(%s)",
                (lease_until, namespace, owner, run_ids),
            )
            await cursor.execute(
                "UPDATE plait_slots SET expires_at = %s WHERE run_id = ANY(%s)", (lease_until, run_ids)
            )
            await cursor.execute(
                "SELECT id FROM plait_runs WHERE namespace = %s AND id = ANY(%s) AND status = 'cancelled'",
                (namespace, run_ids),
            )
            return [row[0] for row in await cursor.fetchall()]

        return await self._write(beat)

    async def load_steps(self, namespace: str, run_id: str) -> list[StepRow]:
        rows = await self._read(
            f"SELECT {STEP_COLUMNS} FROM plait_steps WHERE namespace = %s AND run_id = %s "
            "ORDER BY started_at, step_key, attempt",
            (namespace, run_id),
        )
        return [StepRow(*row) for row in rows]

    @staticmethod
    async def _fence(cursor: Cursor, lease: Lease) -> str:
        """Refuse the write unless this lease still holds the running run; returns its namespace.

        FOR UPDATE holds the run's row until commit, so no claim can slip in between.
        """
        await cursor.execute(
            "SELECT status, lease_token, namespace FROM plait_runs WHERE namespace = %s AND id = %s FOR UPDATE",
            (lease.namespace, lease.run_id),
        )
        row = await cursor.fetchone()
        if row is not None and row[0] == "running" and row[1] == lease.token:
            return str(row[2])
        raise stale_lease(lease, row)

    @staticmethod
    async def _insert_step(cursor: Cursor, namespace: str, step: StepRow) -> None:
        await cursor.execute(
            f"INSERT INTO plait_steps (namespace, {STEP_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            _step_values(namespace, step),
        )

    async def record_step(
        self, lease: Lease, step: StepRow, events: Sequence[NewEvent] = (), usage: Sequence[NewUsage] = ()
    ) -> None:
        # One statement, so one round trip: the fence locks the run row, and the step and its events are
        # inserted only if the lease still holds; autocommit makes the statement its own transaction.
        # Its text depends only on the shape (how many events, usage rows, artifacts), so the driver
        # prepares it once per connection and the server reuses the plan.
        shape, events_params = self._fenced_events(lease, events)
        art_sql, art_params = _artifacts_cte(step.artifacts)
        usage_sql, usage_params = _usage_cte(usage, with_totals=True)
        rows = await self._fenced(
            _record_step_sql(shape, usage_sql, art_sql),
            (
                lease.namespace,
                lease.run_id,
                lease.token,
                *_step_values(lease.namespace, step),
                *events_params,
                *usage_params,
                *art_params,
            ),
        )
        if not rows:
            await self._explain_fence(lease)

    async def append_events(self, lease: Lease, events: Sequence[NewEvent]) -> None:
        shape, events_params = self._fenced_events(lease, events)
        if shape is None:
            return
        rows = await self._fenced(
            f"WITH fence AS ({_FENCE}){_events_cte_sql(shape)} SELECT 1 FROM fence",
            (lease.namespace, lease.run_id, lease.token, *events_params),
        )
        if not rows:
            await self._explain_fence(lease)

    def _fenced_events(self, lease: Lease, events: Sequence[NewEvent]) -> tuple[_EventsShape | None, list[Any]]:
        """The shape and parameters of an ``ev`` CTE writing ``events`` behind a ``fence`` CTE (None: no events).

        Events of the fenced run alone (the usual case) take the short form: the run's last seq is
        looked up once, and each event's own parameters are only what differs between them.
        """
        if not events or not self.record_events:
            return None, []
        first = events[0]
        if all(
            e.run_id == lease.run_id and e.namespace == lease.namespace and e.workflow_id == first.workflow_id
            for e in events
        ):
            params: list[Any] = [first.workflow_id, lease.namespace, lease.run_id]
            for e in events:
                params += [e.type, e.step_id, e.step_key, e.attempt, e.payload, e.created_at]
            return (len(events), True), params
        return (len(events), False), _events_insert(events, "")[1]

    def _events_cte(self, events: Sequence[NewEvent], condition: str) -> tuple[str, list[Any]]:
        """``, ev AS (INSERT ...)`` for a WITH clause, and its parameters ("" when there is nothing to log)."""
        if not events or not self.record_events:
            return "", []
        query, params = _events_insert(events, condition)
        return f", ev AS ({query})", params

    async def _insert_events(self, cursor: Cursor, events: Sequence[NewEvent]) -> None:
        if events and self.record_events:
            query, params = _events_insert(events, "")
            await cursor.execute(query, params)

    async def read_run_events(self, namespace: str, run_id: str, after_seq: int, limit: int) -> list[EventRow]:
        rows = await self._read(
            f"SELECT {EVENT_COLUMNS} FROM plait_events WHERE namespace = %s AND run_id = %s AND seq > %s "
            "ORDER BY seq LIMIT %s",
            (namespace, run_id, after_seq, limit),
        )
        return [EventRow(*row) for row in rows]

    async def events_head(self, namespace: str) -> str | None:
        rows = await self._read(
            "SELECT txid::text, id FROM plait_events WHERE namespace = %s "
            "AND txid < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY txid DESC, id DESC LIMIT 1",
            (namespace,),
        )
        return f"{rows[0][0]}:{rows[0][1]}" if rows else None

    async def read_events(self, namespace: str, cursor: str | None, limit: int) -> tuple[list[EventRow], str | None]:
        # Ids are handed out at insert, not at commit: order by transaction id and stop before the oldest
        # transaction still running, so an event committing later can never land behind the cursor.
        txid, last_id = cursor.split(":") if cursor else ("0", "0")
        rows = await self._read(
            f"SELECT {EVENT_COLUMNS}, txid::text FROM plait_events WHERE namespace = %s "
            "AND (txid, id) > (%s::xid8, %s) AND txid < pg_snapshot_xmin(pg_current_snapshot()) "
            "ORDER BY txid, id LIMIT %s",
            (namespace, txid, int(last_id), limit),
        )
        events = [EventRow(*row[:-1]) for row in rows]
        return events, (f"{rows[-1][-1]}:{rows[-1][0]}" if rows else cursor)

    async def _fenced(self, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Run a fenced statement of one run; its rows once committed ([] when the fence refused it).

        Those of several runs made at once commit together (see ``postgres_group``).
        """
        return await self._group.write(query, params)

    async def _fenced_alone(self, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Run a fenced statement that writes a run's events; once more if their seq was taken meanwhile.

        The statement's snapshot is taken before its fence waits for the run's row lock: when the lock's
        holder (``send_event``, say) added an event to the run meanwhile, the events numbered here from
        that snapshot collide with it. Run again, the statement starts after the holder committed.
        """
        try:
            return await self._read(query, params)
        except StoreUnavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, psycopg.errors.UniqueViolation) and cause.diag.constraint_name == "plait_events_run":
                return await self._read(query, params)
            raise

    async def _explain_fence(self, lease: Lease) -> None:
        """Raise why a fenced write found the lease stale (the write itself changed nothing)."""
        rows = await self._read(
            "SELECT status, lease_token FROM plait_runs WHERE namespace = %s AND id = %s",
            (lease.namespace, lease.run_id),
        )
        raise stale_lease(lease, rows[0] if rows else None)

    async def finish_run(
        self,
        lease: Lease,
        status: str,
        output: str | None,
        error: str | None,
        now: float,
        last_step: StepRow | None,
        events: Sequence[NewEvent] = (),
        usage: Sequence[NewUsage] = (),
    ) -> None:
        step_values = _step_values(lease.namespace, last_step) if last_step is not None else (None,) * 11
        shape, events_params = self._fenced_events(lease, events)
        # The run's row is updated once here (two updates of one row in one statement would lose one):
        # its usage totals grow in the same UPDATE that ends it.
        usage_sql, usage_params = _usage_cte(usage, with_totals=False)
        input_tokens, output_tokens, cost, calls = usage_totals(usage)
        art_sql, art_params = _artifacts_cte(last_step.artifacts if last_step is not None else ())
        # One statement: fence, the last step's row, the run's end, and waking a parent parked on it.
        # Its text is built once per shape (as record_step's), not per call.
        rows = await self._fenced(
            _finish_run_sql(shape, usage_sql, art_sql),
            (
                lease.namespace, lease.run_id, lease.token, *step_values, last_step is not None,
                status, output, error, now, now, input_tokens, output_tokens, calls, cost, cost, now,
                *events_params, *usage_params, *art_params,
            ),
        )  # fmt: skip
        if not rows:
            await self._explain_fence(lease)
        elif rows[0][1]:
            await self._read("SELECT pg_notify(%s, %s)", (CHANNEL, f"{self.schema}/{rows[0][0]}"))

    async def release_run(self, lease: Lease, now: float, ready_at: float | None = None) -> None:
        async def release(cursor: Cursor) -> None:
            await cursor.execute(
                "UPDATE plait_runs SET status = 'pending', owner = NULL, lease_expires_at = NULL, updated_at = %s, "
                "ready_at = coalesce(%s, ready_at) WHERE namespace = %s AND id = %s AND lease_token = %s "
                "AND status = 'running' RETURNING namespace",
                (now, ready_at, lease.namespace, lease.run_id, lease.token),
            )
            row = await cursor.fetchone()
            if row is not None:
                await self._notify(cursor, row[0])

        await self._write(release)

    async def cancel_run(self, namespace: str, run_id: str, now: float, reason: str | None = None) -> list[str]:
        payload = None if reason is None else json.dumps({"reason": reason})

        async def cancel(cursor: Cursor) -> list[str]:
            await cursor.execute(
                "WITH RECURSIVE tree(id) AS (SELECT id FROM plait_runs WHERE id = %s AND namespace = %s "
                "UNION SELECT r.id FROM plait_runs r JOIN tree ON r.namespace = %s AND r.parent_run_id = tree.id) "
                "UPDATE plait_runs SET status = 'cancelled', finished_at = %s, updated_at = %s, owner = NULL, "
                "lease_expires_at = NULL, cancel_reason = %s WHERE namespace = %s AND id IN (SELECT id FROM tree) "
                "AND NOT (status = ANY(%s)) RETURNING id, workflow_id",
                (run_id, namespace, namespace, now, now, reason, namespace, list(TERMINAL_STATUSES)),
            )
            rows = await cursor.fetchall()
            await self._insert_events(
                cursor, [NewEvent(namespace, r[0], r[1], "run.cancelled", now, payload) for r in rows]
            )
            return [row[0] for row in rows]

        return await self._write(cancel)

    async def reopen_run(self, namespace: str, run_id: str, now: float) -> None:
        async def reopen(cursor: Cursor) -> None:
            await cursor.execute(
                "WITH RECURSIVE tree(id) AS (SELECT id FROM plait_runs WHERE id = %s AND namespace = %s "
                "UNION SELECT r.id FROM plait_runs r JOIN tree ON r.namespace = %s AND r.parent_run_id = tree.id) "
                "UPDATE plait_runs SET status = 'pending', error = NULL, finished_at = NULL, ready_at = %s, "
                "retried_at = %s, updated_at = %s WHERE namespace = %s AND id IN (SELECT id FROM tree) "
                "AND status = 'failed' RETURNING id, workflow_id",
                (run_id, namespace, namespace, now, now, now, namespace),
            )
            rows = await cursor.fetchall()
            await self._insert_events(cursor, [NewEvent(namespace, r[0], r[1], "run.retried", now) for r in rows])
            await self._notify(cursor, namespace)

        await self._write(reopen)

    async def fork_run(self, run: NewRun, source_run_id: str, step_keys: list[str]) -> RunRow:
        async def fork(cursor: Cursor) -> RunRow:
            await cursor.execute(
                "INSERT INTO plait_runs (id, namespace, workflow_id, workflow_version, status, input, priority, "
                "metadata, created_at, updated_at, ready_at, queue, concurrency_key, budget, config) "
                f"VALUES (%s, %s, %s, %s, 'pending', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {RUN_COLUMNS}",
                (
                    run.id, run.namespace, run.workflow_id, run.workflow_version, run.input, run.priority,
                    run.metadata, run.created_at, run.created_at, run.ready_at, run.queue, run.concurrency_key,
                    run.budget,
                    run.config,
                ),
            )  # fmt: skip
            row = await cursor.fetchone()
            # The reused steps keep their artifacts (a blob is shared, not copied: prune keeps referenced blobs).
            await cursor.execute(
                f"INSERT INTO plait_artifacts ({ARTIFACT_COLUMNS}) SELECT %s, key, step_id, step_key, kind, "
                "content_type, size, data, blob, created_at, namespace FROM plait_artifacts WHERE namespace = %s "
                "AND run_id = %s AND step_key = ANY(%s)",
                (run.id, run.namespace, source_run_id, step_keys),
            )
            await cursor.execute(
                f"INSERT INTO plait_steps (namespace, {STEP_COLUMNS}) SELECT namespace, %s, step_key, step_id, "
                "attempt, status, input, output, error, started_at, finished_at FROM plait_steps "
                "WHERE namespace = %s AND run_id = %s AND output IS NOT NULL AND step_key = ANY(%s)",
                (run.id, run.namespace, source_run_id, step_keys),
            )
            # The reused steps' usage comes along, marked carried, and the new run's totals start at it.
            await cursor.execute(
                f"INSERT INTO plait_usage ({USAGE_COLUMNS}, carried) SELECT "
                + USAGE_COLUMNS.replace("run_id", "%s", 1)
                + ", 1 FROM plait_usage WHERE namespace = %s AND run_id = %s AND step_key = ANY(%s)",
                (run.id, run.namespace, source_run_id, step_keys),
            )
            await cursor.execute(
                "UPDATE plait_runs SET (usage_input_tokens, usage_output_tokens, usage_cost_nanos, usage_calls) = "
                "(SELECT coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), sum(cost_nanos), count(*) "
                f"FROM plait_usage WHERE namespace = %s AND run_id = %s) WHERE namespace = %s AND id = %s "
                f"RETURNING {RUN_COLUMNS}",
                (run.namespace, run.id, run.namespace, run.id),
            )
            row = await cursor.fetchone()
            await self._insert_events(
                cursor, [lifecycle(run, "run.created", {"rerun_of": source_run_id}, run.created_at)]
            )
            await self._notify(cursor, run.namespace)
            assert row is not None
            return RunRow(*row)

        return await self._write(fork)

    async def prune(self, namespace: str, finished_before: float, limit: int) -> int:
        async def prune(cursor: Cursor) -> int:
            await cursor.execute(
                "SELECT id FROM plait_runs WHERE namespace = %s AND status = ANY(%s) AND finished_at < %s LIMIT %s",
                (namespace, list(TERMINAL_STATUSES), finished_before, limit),
            )
            ids = [row[0] for row in await cursor.fetchall()]
            for table in (
                "plait_steps",
                "plait_waits",
                "plait_inbox",
                "plait_events",
                "plait_usage",
                "plait_artifacts",
            ):
                await cursor.execute(f"DELETE FROM {table} WHERE namespace = %s AND run_id = ANY(%s)", (namespace, ids))
            await cursor.execute("DELETE FROM plait_runs WHERE namespace = %s AND id = ANY(%s)", (namespace, ids))
            return len(ids)

        return await self._write(prune)

    async def mark_waiting_for_version(self, namespace: str, refs: list[str], ready_before: float) -> int:
        async def mark(cursor: Cursor) -> int:
            await cursor.execute(
                "UPDATE plait_runs SET status_message = 'waiting for a worker that has workflow ''' || workflow_id "
                "|| ''' version ''' || workflow_version || ''' registered' "
                "WHERE namespace = %s AND status IN ('pending', 'waiting') AND owner IS NULL AND ready_at <= %s "
                "AND status_message IS NULL AND NOT (workflow_id || '@' || workflow_version = ANY(%s))",
                (namespace, ready_before, refs),
            )
            return cursor.rowcount

        return await self._write(mark)

    # -- waiting -------------------------------------------------------------

    async def load_waits(self, namespace: str, run_id: str) -> list[WaitRow]:
        rows = await self._read(
            f"SELECT {WAIT_COLUMNS} FROM plait_waits WHERE namespace = %s AND run_id = %s", (namespace, run_id)
        )
        return [WaitRow(*row) for row in rows]

    async def park_run(self, lease: Lease, park: Park, now: float, events: Sequence[NewEvent] = ()) -> None:
        async def do_park(cursor: Cursor) -> None:
            namespace = await self._fence(cursor, lease)
            await self._insert_events(cursor, events)
            if park.wait is not None:
                wait = park.wait
                await cursor.execute(
                    f"INSERT INTO plait_waits (namespace, {WAIT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (namespace, run_id, step_key) DO UPDATE SET kind = EXCLUDED.kind, "
                    "wake_at = EXCLUDED.wake_at, deadline = EXCLUDED.deadline, event_name = EXCLUDED.event_name, "
                    "state = EXCLUDED.state, created_at = EXCLUDED.created_at",
                    (
                        namespace, wait.run_id, wait.step_key, wait.kind, wait.wake_at, wait.deadline,
                        wait.event_name, wait.state, wait.created_at,
                    ),
                )  # fmt: skip
            if park.clear_events is not None:
                await cursor.execute(
                    "DELETE FROM plait_inbox WHERE namespace = %s AND run_id = %s AND name = %s",
                    (namespace, lease.run_id, park.clear_events),
                )
            ready_at = park.ready_at
            if park.wake_on is not None:
                await cursor.execute(
                    "SELECT 1 FROM plait_inbox WHERE namespace = %s AND run_id = %s AND name = %s "
                    "AND consumed_by IS NULL LIMIT 1",
                    (namespace, lease.run_id, park.wake_on),
                )
                ready_at = now if await cursor.fetchone() else ready_at
            if park.wake_if_done is not None:
                await cursor.execute(
                    "SELECT 1 FROM plait_runs WHERE namespace = %s AND id = %s AND status = ANY(%s)",
                    (namespace, park.wake_if_done, list(TERMINAL_STATUSES)),
                )
                ready_at = now if await cursor.fetchone() else ready_at
            await cursor.execute(
                "UPDATE plait_runs SET status = %s, ready_at = %s, wait_info = %s, owner = NULL, "
                "lease_expires_at = NULL, updated_at = %s WHERE namespace = %s AND id = %s",
                (park.status, ready_at, park.wait_info, now, namespace, lease.run_id),
            )
            if ready_at <= now:
                await self._notify(cursor, namespace)

        await self._write(do_park)

    async def consume_event(
        self, lease: Lease, name: str, step_key: str, record: StepRow | None, events: Sequence[NewEvent] = ()
    ) -> str | None:
        async def consume(cursor: Cursor) -> str | None:
            await self._fence(cursor, lease)
            await cursor.execute(
                "SELECT id, payload FROM plait_inbox WHERE namespace = %s AND run_id = %s AND name = %s "
                "AND consumed_by IS NULL ORDER BY id LIMIT 1 FOR UPDATE",
                (lease.namespace, lease.run_id, name),
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            await cursor.execute("UPDATE plait_inbox SET consumed_by = %s WHERE id = %s", (step_key, row[0]))
            if record is not None:
                await self._insert_step(
                    cursor,
                    lease.namespace,
                    StepRow(
                        record.run_id, record.step_key, record.step_id, record.attempt, record.status,
                        record.input, row[1], record.error, record.started_at, record.finished_at,
                    ),
                )  # fmt: skip
            await self._insert_events(cursor, events)
            return str(row[1])

        return await self._write(consume)

    async def peek_event(self, namespace: str, run_id: str, name: str) -> str | None:
        rows = await self._read(
            "SELECT payload FROM plait_inbox WHERE namespace = %s AND run_id = %s AND name = %s "
            "AND consumed_by IS NULL ORDER BY id DESC LIMIT 1",
            (namespace, run_id, name),
        )
        return str(rows[0][0]) if rows else None

    async def send_event(
        self,
        namespace: str,
        run_id: str,
        name: str,
        payload: str,
        event_id: str | None,
        now: float,
        wakes: str,
        decision: Decision | None = None,
    ) -> tuple[str | None, bool]:
        async def send(cursor: Cursor) -> tuple[str | None, bool]:
            # Locking the run serializes this with a park of the same run, and with another
            # decision on it: one of them sees the other.
            await cursor.execute(
                "SELECT status, workflow_id, wait_info FROM plait_runs WHERE id = %s AND namespace = %s FOR UPDATE",
                (run_id, namespace),
            )
            found = await cursor.fetchone()
            if found is None:
                return None, False
            repeated = False
            if event_id is not None:
                await cursor.execute(
                    "SELECT 1 FROM plait_inbox WHERE namespace = %s AND run_id = %s AND event_id = %s",
                    (namespace, run_id, event_id),
                )
                repeated = await cursor.fetchone() is not None
            if repeated or found[0] in TERMINAL_STATUSES:
                return ("duplicate" if repeated else str(found[0])), False
            if decision is not None:
                await cursor.execute(
                    "SELECT count(*), count(*) - count(consumed_by) FROM plait_inbox "
                    "WHERE namespace = %s AND run_id = %s AND name = %s",
                    (namespace, run_id, name),
                )
                taken = await cursor.fetchone()
                assert taken is not None
                if not is_decision_open(decision, found[0], found[2], wakes, taken[1] > 0, taken[0] > 0):
                    return "decided", False
            await cursor.execute(
                "INSERT INTO plait_inbox (namespace, run_id, name, event_id, payload, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (namespace, run_id, name, event_id, payload, now),
            )
            inserted = cursor.rowcount == 1
            if inserted:
                received = json.dumps({"name": name, "event_id": event_id})
                await self._insert_events(
                    cursor, [NewEvent(namespace, run_id, found[1], "event.received", now, received)]
                )
            if inserted and found[0] == wakes:
                await cursor.execute(
                    "UPDATE plait_runs SET status = 'waiting', ready_at = %s, updated_at = %s "
                    "WHERE namespace = %s AND id = %s",
                    (now, now, namespace, run_id),
                )
                await self._notify(cursor, namespace)
            return str(found[0]), inserted

        return await self._write(send)

    async def next_ready_at(self, namespace: str, now: float) -> float | None:
        rows = await self._read(
            "SELECT min(ready_at) FROM plait_runs WHERE namespace = %s AND status = ANY(%s) AND ready_at > %s",
            (namespace, list(CLAIMABLE_STATUSES), now),
        )
        return None if rows[0][0] is None else float(rows[0][0])


def _step_values(namespace: str, step: StepRow) -> tuple[Any, ...]:
    return (
        namespace, step.run_id, step.step_key, step.step_id, step.attempt, step.status, step.input, step.output,
        step.error, step.started_at, step.finished_at,
    )  # fmt: skip


# The lease fence of every write of a running run: its row, locked until commit, only while the lease holds.
_FENCE = (
    "SELECT id, namespace FROM plait_runs WHERE namespace = %s AND id = %s AND status = 'running' "
    "AND lease_token = %s FOR UPDATE"
)
# How many events, and whether all are the fenced run's own (the short form of ``_fenced_events``).
_EventsShape = tuple[int, bool]
_RUN_EVENT_ROW = "(%s::text, %s::text, %s::text, %s::int, %s::text, %s::float8, {n})"


@functools.lru_cache(maxsize=128)
def _events_cte_sql(shape: _EventsShape | None) -> str:
    """``, ev AS (INSERT ...)`` writing events only if the fence held ("" without events)."""
    if shape is None:
        return ""
    count, own_run = shape
    if not own_run:
        return f", ev AS ({_events_insert_sql('WHERE EXISTS (SELECT 1 FROM fence)')})"
    # One statement sees one snapshot: the events are numbered on from the run's last seq, in order.
    # Every writer of a run's events holds the run's row lock (here: the fence), so none picks the same seq.
    rows = ", ".join(_RUN_EVENT_ROW.format(n=n) for n in range(1, count + 1))
    return (
        ", ev AS (INSERT INTO plait_events (namespace, run_id, workflow_id, seq, type, step_id, step_key, attempt, "
        "payload, created_at) SELECT fence.namespace, fence.id, %s::text, last.seq + v.n, v.type, v.step_id, "
        "v.step_key, v.attempt, v.payload, v.created_at FROM fence, "
        "(SELECT coalesce(max(seq), 0) AS seq FROM plait_events WHERE namespace = %s AND run_id = %s) AS last, "
        f"(VALUES {rows}) AS v(type, step_id, step_key, attempt, payload, created_at, n))"
    )


@functools.lru_cache(maxsize=256)
def _record_step_sql(shape: _EventsShape | None, usage_sql: str, art_sql: str) -> str:
    return (
        f"WITH fence AS ({_FENCE}), step AS (INSERT INTO plait_steps (namespace, {STEP_COLUMNS}) "
        "SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s FROM fence RETURNING 1)"
        f"{_events_cte_sql(shape)}{usage_sql}{art_sql} SELECT 1 FROM step"
    )


@functools.lru_cache(maxsize=256)
def _finish_run_sql(shape: _EventsShape | None, usage_sql: str, art_sql: str) -> str:
    return (
        f"WITH fence AS ({_FENCE}), "
        f"step AS (INSERT INTO plait_steps (namespace, {STEP_COLUMNS}) "
        "SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s FROM fence WHERE %s RETURNING 1), "
        "done AS (UPDATE plait_runs r SET status = %s, output = %s, error = %s, finished_at = %s, "
        "updated_at = %s, owner = NULL, lease_expires_at = NULL, wait_info = NULL, "
        f"{_TOTALS_SET} FROM fence "
        "WHERE r.namespace = fence.namespace AND r.id = fence.id RETURNING r.parent_run_id, fence.namespace), "
        "parent AS (UPDATE plait_runs p SET ready_at = %s FROM done WHERE p.namespace = done.namespace "
        f"AND p.id = done.parent_run_id AND p.status = 'waiting' RETURNING p.id){_events_cte_sql(shape)}"
        f"{usage_sql}{art_sql} SELECT done.namespace, (SELECT count(*) FROM parent) FROM done"
    )


_ARTIFACT_ROW = (
    "(%s::text, %s::text, %s::text, %s::text, %s::text, %s::text, %s::bigint, %s::bytea, %s::text, %s::float8, "
    "%s::text)"
)


def _artifacts_cte(artifacts: Sequence[ArtifactRow]) -> tuple[str, list[Any]]:
    """``, art AS (INSERT ...)`` writing a step's artifacts only if the fence held ("" when there are none)."""
    if not artifacts:
        return "", []
    latest = {a.key: a for a in artifacts}  # one row per key: ON CONFLICT cannot touch a row twice
    params: list[Any] = []
    for a in latest.values():
        params += [a.run_id, a.key, a.step_id, a.step_key, a.kind, a.content_type, a.size, a.data, a.blob]
        params += [a.created_at, a.namespace]
    query = (
        f", art AS (INSERT INTO plait_artifacts ({ARTIFACT_COLUMNS}) SELECT * FROM (VALUES "
        f"{', '.join([_ARTIFACT_ROW] * len(latest))}) AS v({ARTIFACT_COLUMNS}) WHERE EXISTS (SELECT 1 FROM fence) "
        "ON CONFLICT (namespace, run_id, key) DO UPDATE SET step_id = excluded.step_id, step_key = excluded.step_key, "
        "kind = excluded.kind, content_type = excluded.content_type, size = excluded.size, data = excluded.data, "
        "blob = excluded.blob, created_at = excluded.created_at)"
    )
    return query, params


_TOTALS_SET = (
    "usage_input_tokens = r.usage_input_tokens + %s, usage_output_tokens = r.usage_output_tokens + %s, "
    "usage_calls = r.usage_calls + %s, "
    "usage_cost_nanos = CASE WHEN %s::bigint IS NULL THEN r.usage_cost_nanos "
    "ELSE coalesce(r.usage_cost_nanos, 0) + %s::bigint END"
)
_USAGE_ROW = (
    "(%s::text, %s::text, %s::text, %s::text, %s::text, %s::int, %s::int, %s::text, %s::text, %s::bigint, %s::bigint, "
    "%s::bigint, %s::bigint, %s::bigint, %s::bigint, %s::text, %s::text, %s::text, %s::text, %s::text, %s::float8)"
)


def _usage_cte(usage: Sequence[NewUsage], *, with_totals: bool) -> tuple[str, list[Any]]:
    """``, usage AS (INSERT ...)`` (and the run's totals) for a fenced WITH clause; "" without usage."""
    if not usage:
        return "", []
    query = (
        f", usage AS (INSERT INTO plait_usage ({USAGE_COLUMNS}) SELECT * FROM "
        f"(VALUES {', '.join([_USAGE_ROW] * len(usage))}) AS v WHERE EXISTS (SELECT 1 FROM fence))"
    )
    params: list[Any] = [value for call in usage for value in usage_values(call)]
    if with_totals:
        query += (
            f", totals AS (UPDATE plait_runs r SET {_TOTALS_SET} FROM fence "
            "WHERE r.namespace = fence.namespace AND r.id = fence.id)"
        )
        input_tokens, output_tokens, cost, calls = usage_totals(usage)
        params += [input_tokens, output_tokens, calls, cost, cost]
    return query, params


def _events_insert(events: Sequence[NewEvent], condition: str) -> tuple[str, list[Any]]:
    """One INSERT of events that numbers each run's events on from its last seq.

    One statement sees one snapshot, so the numbers come from max(seq) plus
    the event's place among that run's events in this statement. Every writer
    of a run's events holds the run's row lock, so two never pick the same seq.

    The events go in as one array per column: the statement's text is the same however many there
    are, so the driver parses it once and the server plans it once (a claim of 64 timers writes 128).
    """
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [], [])
    for e in events:
        for column, value in zip(
            columns,
            (e.namespace, e.run_id, e.workflow_id, e.type, e.step_id, e.step_key, e.attempt, e.payload, e.created_at),
            strict=True,
        ):
            column.append(value)
    return _events_insert_sql(condition), list(columns)


@functools.lru_cache(maxsize=16)
def _events_insert_sql(condition: str) -> str:
    return (
        "INSERT INTO plait_events (namespace, run_id, workflow_id, seq, type, step_id, step_key, attempt, payload, "
        "created_at) SELECT v.namespace, v.run_id, v.workflow_id, "
        "(SELECT coalesce(max(e.seq), 0) FROM plait_events e "
        "WHERE e.namespace = v.namespace AND e.run_id = v.run_id) "
        "+ row_number() OVER (PARTITION BY v.namespace, v.run_id ORDER BY v.n), v.type, v.step_id, v.step_key, "
        "v.attempt, v.payload, v.created_at FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], "
        "%s::text[], %s::text[], %s::int[], %s::text[], %s::float8[]) WITH ORDINALITY "
        f"AS v(namespace, run_id, workflow_id, type, step_id, step_key, attempt, payload, created_at, n) {condition}"
    )
