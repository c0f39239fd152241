"""PostgreSQL backend: psycopg 3 with a pool, ``FOR UPDATE SKIP LOCKED`` claims, LISTEN/NOTIFY wake-ups.

Every worker on every machine shares the work through these tables; the
database is the only coordination point. Row locks on the run serialize the
things that race (a claim, a step commit, an event, a park), so the
transactions stay short and nothing else is needed.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from typing import Any

from psycopg import sql

from plait.errors import StoreUnavailable
from plait.queues import Candidate, choose_claims
from plait.store.base import (
    CLAIMABLE_STATUSES,
    STATE_EVENT_TYPES,
    TERMINAL_STATUSES,
    USAGE_COLUMNS,
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
    lifecycle,
    stale_lease,
    usage_totals,
)
from plait.store.postgres_connection import CHANNEL, Cursor, split_schema
from plait.store.postgres_events import EVENT_COLUMNS, PostgresEvents
from plait.store.postgres_queues import PostgresQueues
from plait.store.postgres_schema import MIGRATIONS
from plait.store.postgres_statements import (
    ARTIFACT_COLUMNS,
    FENCE,
    STEP_COLUMNS,
    artifacts_cte,
    events_cte_sql,
    finish_run_sql,
    record_step_sql,
    step_values,
    usage_cte,
)
from plait.store.run_listing import run_filter_sql, run_listing_sql

__all__ = ["PostgresStore", "split_schema"]

RUN_COLUMNS = (
    "id, namespace, workflow_id, workflow_version, status, input, output, error, idempotency_key, priority, "
    "metadata, parent_run_id, parent_step_key, status_message, created_at, updated_at, started_at, finished_at, "
    "ready_at, retried_at, owner, lease_token, wait_info, queue, concurrency_key, trace_context, "
    "usage_input_tokens, usage_output_tokens, usage_cost_nanos, usage_calls, budget, cancel_reason, config"
)
WAIT_COLUMNS = "run_id, step_key, kind, wake_at, deadline, event_name, state, created_at"


class PostgresStore(PostgresEvents, PostgresQueues):
    """The ``Store`` on PostgreSQL; plait's tables live in ``schema`` (default ``public``).

    Here: runs, their steps and waits, the hot path of every step (``record_step``,
    ``finish_run``, their statements in ``postgres_statements``). The event log and the
    inbox are in ``postgres_events``, queue limits in ``postgres_queues``, the pool and
    group commit in ``postgres_connection``.
    """

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

        # Pipelined: BEGIN goes with the SELECT, and the events with COMMIT (three round trips, not five):
        # a wave of woken timers is claimed while the previous wave's writes keep the server busy.
        return await self._write(claim, pipeline=True)

    async def load_run_states(self, namespace: str, run_ids: list[str]) -> dict[str, RunState]:
        states = {run_id: RunState([], [], []) for run_id in run_ids}
        if not run_ids:
            return states
        # One connection, one pipeline: the three reads go out together, one round trip instead of three
        # (a wave of woken timers loads its state while the previous wave's writes keep the server busy).
        async with (
            self._cursor(write=False) as steps,
            steps.connection.pipeline(),
            steps.connection.cursor() as waits,
            steps.connection.cursor() as events,
        ):
            await steps.execute(
                f"SELECT {STEP_COLUMNS} FROM plait_steps WHERE namespace = %s AND run_id = ANY(%s) "
                "ORDER BY started_at, step_key, attempt",
                (namespace, run_ids),
            )
            await waits.execute(
                f"SELECT {WAIT_COLUMNS} FROM plait_waits WHERE namespace = %s AND run_id = ANY(%s)",
                (namespace, run_ids),
            )
            if self.record_events:
                await events.execute(
                    f"SELECT {EVENT_COLUMNS} FROM plait_events WHERE namespace = %s AND run_id = ANY(%s) "
                    "AND type = ANY(%s) ORDER BY run_id, seq",
                    (namespace, run_ids, list(STATE_EVENT_TYPES)),
                )
            for row in await steps.fetchall():
                states[row[0]].steps.append(StepRow(*row))
            for row in await waits.fetchall():
                states[row[0]].waits.append(WaitRow(*row))
            if self.record_events:
                for row in await events.fetchall():
                    states[row[2]].events.append(EventRow(*row))
        return states

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
            step_values(namespace, step),
        )

    async def record_step(
        self, lease: Lease, step: StepRow, events: Sequence[NewEvent] = (), usage: Sequence[NewUsage] = ()
    ) -> None:
        # One statement, so one round trip: the fence locks the run row, and the step and its events are
        # inserted only if the lease still holds; autocommit makes the statement its own transaction.
        # Its text depends only on the shape (how many events, usage rows, artifacts), so the driver
        # prepares it once per connection and the server reuses the plan.
        shape, events_params = self._fenced_events(lease, events)
        art_sql, art_params = artifacts_cte(step.artifacts)
        usage_sql, usage_params = usage_cte(usage, with_totals=True)
        rows = await self._fenced(
            record_step_sql(shape, usage_sql, art_sql),
            (
                lease.namespace,
                lease.run_id,
                lease.token,
                *step_values(lease.namespace, step),
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
            f"WITH fence AS ({FENCE}){events_cte_sql(shape)} SELECT 1 FROM fence",
            (lease.namespace, lease.run_id, lease.token, *events_params),
        )
        if not rows:
            await self._explain_fence(lease)

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
        last_values = step_values(lease.namespace, last_step) if last_step is not None else (None,) * 11
        shape, events_params = self._fenced_events(lease, events)
        # The run's row is updated once here (two updates of one row in one statement would lose one):
        # its usage totals grow in the same UPDATE that ends it.
        usage_sql, usage_params = usage_cte(usage, with_totals=False)
        input_tokens, output_tokens, cost, calls = usage_totals(usage)
        art_sql, art_params = artifacts_cte(last_step.artifacts if last_step is not None else ())
        # One statement: fence, the last step's row, the run's end, and waking a parent parked on it.
        # Its text is built once per shape (as record_step's), not per call.
        rows = await self._fenced(
            finish_run_sql(shape, usage_sql, art_sql),
            (
                lease.namespace, lease.run_id, lease.token, *last_values, last_step is not None,
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

    async def next_ready_at(self, namespace: str, now: float) -> float | None:
        rows = await self._read(
            "SELECT min(ready_at) FROM plait_runs WHERE namespace = %s AND status = ANY(%s) AND ready_at > %s",
            (namespace, list(CLAIMABLE_STATUSES), now),
        )
        return None if rows[0][0] is None else float(rows[0][0])
