"""SQLite backend: one file, WAL, ``BEGIN IMMEDIATE`` writers, busy retries.

Several processes can share one file. Writers take the write lock at BEGIN
(IMMEDIATE), or two of them could both read a run as free and both claim it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

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
    usage_values,
)
from plait.store.run_listing import run_filter_sql, run_listing_sql
from plait.store.sqlite_events import EVENT_COLUMNS, SQLiteEvents
from plait.store.sqlite_queues import SQLiteQueues
from plait.store.sqlite_schema import MIGRATIONS

RUN_COLUMNS = (
    "id, namespace, workflow_id, workflow_version, status, input, output, error, idempotency_key, priority, "
    "metadata, parent_run_id, parent_step_key, status_message, created_at, updated_at, started_at, finished_at, "
    "ready_at, retried_at, owner, lease_token, wait_info, queue, concurrency_key, trace_context, "
    "usage_input_tokens, usage_output_tokens, usage_cost_nanos, usage_calls, budget, cancel_reason, config"
)
ARTIFACT_COLUMNS = "run_id, key, step_id, step_key, kind, content_type, size, data, blob, created_at, namespace"
WAIT_COLUMNS = "run_id, step_key, kind, wake_at, deadline, event_name, state, created_at"
STEP_COLUMNS = "run_id, step_key, step_id, attempt, status, input, output, error, started_at, finished_at"
# A step row that lands only while the lease holds the running run (see _insert_step_fenced).
FENCED_STEP_INSERT = (
    f"INSERT INTO plait_steps (namespace, {STEP_COLUMNS}) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
    "WHERE EXISTS (SELECT 1 FROM plait_runs WHERE namespace = ? AND id = ? AND status = 'running' "
    "AND lease_token = ?)"
)
# A run is named by (namespace, id): every row of a run carries its namespace, and every lookup names both.
_TERMINAL_SQL = "(" + ", ".join(f"'{s}'" for s in TERMINAL_STATUSES) + ")"
_CLAIMABLE_SQL = "(" + ", ".join(f"'{s}'" for s in CLAIMABLE_STATUSES) + ")"
_STATE_EVENTS_SQL = "(" + ", ".join(f"'{t}'" for t in STATE_EVENT_TYPES) + ")"


def _step_values(namespace: str, step: StepRow) -> tuple[object, ...]:
    """The INSERT parameters of a step row, in ``namespace, STEP_COLUMNS`` order."""
    return (
        namespace, step.run_id, step.step_key, step.step_id, step.attempt, step.status, step.input, step.output,
        step.error, step.started_at, step.finished_at,
    )  # fmt: skip


class SQLiteStore(SQLiteEvents, SQLiteQueues):
    """The ``Store`` on one SQLite file. Use from a single thread (the engine's loop).

    Here: runs, their steps and waits, the hot path of every step (``record_step``,
    ``finish_run``). The event log and the inbox are in ``sqlite_events``, queue
    limits in ``sqlite_queues``, the connection and group commit in ``sqlite_connection``.
    """

    def on_wakeup(self, callback: Callable[[], None]) -> None:
        """SQLite has no notifications: other processes' work is found by polling."""

    async def migrate(self) -> None:
        def apply(conn: sqlite3.Connection) -> None:
            conn.execute("CREATE TABLE IF NOT EXISTS plait_schema (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM plait_schema").fetchone()
            current = row[0] or 0
            for version, script in enumerate(MIGRATIONS, start=1):
                if version > current:
                    if callable(script):
                        script(conn)
                    else:
                        for statement in script.split(";"):
                            if statement.strip():
                                conn.execute(statement)
                    conn.execute("INSERT INTO plait_schema (version) VALUES (?)", (version,))

        await self._write(apply)

    async def sql(self, query: str, params: Sequence[object] = (), *, write: bool = False) -> list[tuple[Any, ...]]:
        if not write:
            return self._read(query, list(params))
        return await self._write(lambda conn: conn.execute(query, list(params)).fetchall())

    async def schema_version(self) -> int:
        return int(self._read("SELECT max(version) FROM plait_schema")[0][0] or 0)

    async def create_run(self, run: NewRun) -> tuple[RunRow, bool]:
        run = self._claimable_at_create(run)

        def insert(conn: sqlite3.Connection) -> tuple[RunRow, bool]:
            status = "running" if run.owner else "pending"
            # A run with this id or idempotency key exists when the INSERT writes nothing; only then is
            # it read. RETURNING hands back the new row as stored (defaults and types), without a SELECT.
            rows = conn.execute(
                "INSERT INTO plait_runs (id, namespace, workflow_id, workflow_version, status, input, "
                "idempotency_key, priority, metadata, parent_run_id, parent_step_key, created_at, updated_at, "
                "started_at, ready_at, owner, lease_expires_at, lease_token, queue, concurrency_key, trace_context, "
                "budget, config) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                f"ON CONFLICT DO NOTHING RETURNING {RUN_COLUMNS}",
                (
                    run.id, run.namespace, run.workflow_id, run.workflow_version, status, run.input,
                    run.idempotency_key, run.priority, run.metadata, run.parent_run_id, run.parent_step_key,
                    run.created_at, run.created_at, run.created_at if run.owner else None, run.ready_at,
                    run.owner, run.lease_expires_at, 1 if run.owner else 0, run.queue, run.concurrency_key,
                    run.trace_context, run.budget, run.config,
                ),
            ).fetchall()  # fmt: skip
            if not rows:
                existing = self._find_existing(conn, run)
                assert existing is not None  # the INSERT hit its id or its idempotency key
                return existing, False
            created = [lifecycle(run, "run.created", {"workflow_version": run.workflow_version}, run.created_at)]
            if run.owner:
                created.append(lifecycle(run, "run.started", None, run.created_at))
            self._insert_events(conn, created)
            return RunRow(*rows[0]), True

        return await self._write(insert)

    @staticmethod
    def _find_existing(conn: sqlite3.Connection, run: NewRun) -> RunRow | None:
        row = conn.execute(
            f"SELECT {RUN_COLUMNS} FROM plait_runs WHERE namespace = ? AND id = ?", (run.namespace, run.id)
        ).fetchone()
        if row is None and run.idempotency_key is not None:
            row = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM plait_runs WHERE namespace = ? AND idempotency_key = ?",
                (run.namespace, run.idempotency_key),
            ).fetchone()
        return RunRow(*row) if row else None

    async def get_run(self, namespace: str, run_id: str) -> RunRow | None:
        rows = self._read(f"SELECT {RUN_COLUMNS} FROM plait_runs WHERE id = ? AND namespace = ?", (run_id, namespace))
        return RunRow(*rows[0]) if rows else None

    async def list_runs(
        self, namespace: str, where: RunFilter, limit: int, after: tuple[float, str] | None
    ) -> list[RunRow]:
        query, params = run_listing_sql(namespace, where, limit, after, "?", RUN_COLUMNS)
        return [RunRow(*row) for row in self._read(query, params)]

    async def count_runs(self, namespace: str, where: RunFilter) -> int:
        clauses, params = run_filter_sql(namespace, where, "?")
        return int(self._read(f"SELECT count(*) FROM plait_runs WHERE {' AND '.join(clauses)}", params)[0][0])

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
        only = "" if run_id is None else "AND id = ? "
        horizon = now if ready_by is None else max(now, ready_by)

        def claim(conn: sqlite3.Connection) -> list[RunRow]:
            rows = conn.execute(
                "SELECT id, queue, concurrency_key, priority, ready_at, started_at IS NULL, wait_info FROM plait_runs "
                f"WHERE namespace = ? AND status IN {_CLAIMABLE_SQL} AND ready_at <= ? "
                "AND (owner IS NULL OR lease_expires_at < ?) "
                f"AND workflow_id || '@' || workflow_version IN (SELECT value FROM json_each(?)) {only}"
                "ORDER BY priority DESC, ready_at, id LIMIT ?",
                (namespace, horizon, wall_now, json.dumps(refs), *([] if run_id is None else [run_id]), limit * 4),
            ).fetchall()
            candidates = [Candidate(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]
            queues = self._limited_queues(conn, {c.queue for c in candidates if c.queue})
            # A queue's limits count starts when they happen: its runs are only claimed once due.
            candidates = [c for c in candidates if c.ready_at <= now or c.queue not in queues]
            load = {name: self._queue_load(conn, queue, now, wall_now) for name, queue in queues.items()}
            ids = choose_claims(candidates, queues, load, limit)
            if not ids:
                return []
            waited = {r[0]: r[6] for r in rows}
            claimed = conn.execute(
                "UPDATE plait_runs SET status = 'running', owner = ?, lease_expires_at = ?, "
                "lease_token = lease_token + 1, started_at = coalesce(started_at, max(?, ready_at)), "
                "status_message = NULL, wait_info = NULL, updated_at = ? "
                "WHERE namespace = ? AND id IN (SELECT value FROM json_each(?)) "
                f"RETURNING {RUN_COLUMNS}",
                (owner, lease_until, now, now, namespace, json.dumps(ids)),
            ).fetchall()
            first = {c.id for c in candidates if c.first_start}
            # A run claimed ahead starts (and its timer fires) at its ready_at, not at the claim.
            rows_claimed = [RunRow(*row) for row in claimed]
            self._insert_events(
                conn,
                [
                    e
                    for r in rows_claimed
                    for e in claim_events(r, r.id in first, waited.get(r.id), max(now, r.ready_at))
                ],
            )
            first_starts = [c for c in candidates if c.id in ids and c.first_start and c.queue in queues]
            conn.executemany(
                "INSERT INTO plait_queue_starts (queue, started_at) VALUES (?, ?)",
                [(c.queue, now) for c in first_starts if queues[c.queue or ""].rate_limit is not None],
            )
            order = {run_id: i for i, run_id in enumerate(ids)}
            return sorted(rows_claimed, key=lambda r: order[r.id])

        if not refs or limit <= 0:
            return []
        # A plain read first: an idle poll must not take the write lock that
        # other processes need for their commits.
        ready = run_id is not None or await self.has_ready_runs(namespace, refs, horizon, wall_now)
        return await self._write(claim) if ready else []

    async def load_run_states(self, namespace: str, run_ids: list[str]) -> dict[str, RunState]:
        states = {run_id: RunState([], [], []) for run_id in run_ids}
        if not run_ids:
            return states
        ids = json.dumps(run_ids)
        among = "namespace = ? AND run_id IN (SELECT value FROM json_each(?))"
        for row in self._read(
            f"SELECT {STEP_COLUMNS} FROM plait_steps WHERE {among} ORDER BY started_at, step_key, attempt",
            (namespace, ids),
        ):
            states[row[0]].steps.append(StepRow(*row))
        for row in self._read(f"SELECT {WAIT_COLUMNS} FROM plait_waits WHERE {among}", (namespace, ids)):
            states[row[0]].waits.append(WaitRow(*row))
        if self.record_events:
            for row in self._read(
                f"SELECT {EVENT_COLUMNS} FROM plait_events WHERE {among} AND type IN {_STATE_EVENTS_SQL} "
                "ORDER BY run_id, seq",
                (namespace, ids),
            ):
                states[row[2]].events.append(EventRow(*row))
        return states

    async def has_ready_runs(self, namespace: str, refs: list[str], now: float, wall_now: float) -> bool:
        rows = self._read(
            f"SELECT 1 FROM plait_runs WHERE namespace = ? AND status IN {_CLAIMABLE_SQL} AND ready_at <= ? "
            "AND (owner IS NULL OR lease_expires_at < ?) "
            "AND workflow_id || '@' || workflow_version IN (SELECT value FROM json_each(?)) LIMIT 1",
            (namespace, now, wall_now, json.dumps(refs)),
        )
        return bool(rows)

    async def release_owners(self, namespace: str, owners: list[str]) -> int:
        def release(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE plait_runs SET owner = NULL, lease_expires_at = NULL, status = 'pending' "
                "WHERE namespace = ? AND status = 'running' AND owner IN (SELECT value FROM json_each(?))",
                (namespace, json.dumps(owners)),
            )
            return cursor.rowcount

        return await self._write(release) if owners else 0

    async def owners_on_host(self, namespace: str, host: str) -> list[str]:
        rows = self._read(
            "SELECT DISTINCT owner FROM plait_runs WHERE namespace = ? AND status = 'running' AND owner LIKE ?",
            (namespace, host.replace("%", "") + ":%"),
        )
        return [row[0] for row in rows]

    async def heartbeat(self, namespace: str, owner: str, run_ids: list[str], lease_until: float) -> list[str]:
        def beat(conn: sqlite3.Connection) -> list[str]:
            # Only runs this worker still executes: one it failed to hand back must expire.
            conn.execute(
                "UPDATE plait_runs SET lease_expires_at = ? WHERE namespace = ? AND owner = ? AND status = 'running' "
                "AND id IN (SELECT value FROM json_each(?))",
                (lease_until, namespace, owner, json.dumps(run_ids)),
            )
            conn.execute(
                "UPDATE plait_slots SET expires_at = ? WHERE run_id IN (SELECT value FROM json_each(?))",
                (lease_until, json.dumps(run_ids)),
            )
            rows = conn.execute(
                "SELECT id FROM plait_runs WHERE namespace = ? AND id IN (SELECT value FROM json_each(?)) "
                "AND status = 'cancelled'",
                (namespace, json.dumps(run_ids)),
            ).fetchall()
            return [row[0] for row in rows]

        return await self._write(beat)

    async def load_steps(self, namespace: str, run_id: str) -> list[StepRow]:
        rows = self._read(
            f"SELECT {STEP_COLUMNS} FROM plait_steps WHERE namespace = ? AND run_id = ? "
            "ORDER BY started_at, step_key, attempt",
            (namespace, run_id),
        )
        return [StepRow(*row) for row in rows]

    @staticmethod
    def _lease_row(conn: sqlite3.Connection, lease: Lease) -> tuple[Any, ...] | None:
        """The run's (status, lease_token), which the lease fence checks."""
        row: tuple[Any, ...] | None = conn.execute(
            "SELECT status, lease_token FROM plait_runs WHERE namespace = ? AND id = ?", (lease.namespace, lease.run_id)
        ).fetchone()
        return row

    @classmethod
    def _fence(cls, conn: sqlite3.Connection, lease: Lease) -> None:
        """Refuse the write unless this lease still holds the running run.

        A read is enough: the transaction holds the write lock, so nobody can
        take the run over between this check and the commit.
        """
        row = cls._lease_row(conn, lease)
        if row is not None and row[0] == "running" and row[1] == lease.token:
            return
        raise stale_lease(lease, row)

    @classmethod
    def _insert_step_fenced(cls, conn: sqlite3.Connection, lease: Lease, step: StepRow) -> None:
        """Insert a step row only while ``lease`` holds the running run: the fence and the INSERT in one statement.

        One statement fewer per step than ``_fence`` then ``_insert_step``; the
        run's row is read only to explain a refusal.
        """
        params = (*_step_values(lease.namespace, step), lease.namespace, lease.run_id, lease.token)
        if conn.execute(FENCED_STEP_INSERT, params).rowcount == 0:
            raise stale_lease(lease, cls._lease_row(conn, lease))
        cls._insert_artifacts(conn, lease.namespace, step)

    @classmethod
    def _insert_step(cls, conn: sqlite3.Connection, namespace: str, step: StepRow) -> None:
        conn.execute(
            f"INSERT INTO plait_steps (namespace, {STEP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _step_values(namespace, step),
        )
        cls._insert_artifacts(conn, namespace, step)

    @staticmethod
    def _insert_artifacts(conn: sqlite3.Connection, namespace: str, step: StepRow) -> None:
        if step.artifacts:  # committed with the step that made them, or not at all
            conn.executemany(
                f"INSERT OR REPLACE INTO plait_artifacts ({ARTIFACT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (a.run_id, a.key, a.step_id, a.step_key, a.kind, a.content_type, a.size, a.data, a.blob,
                     a.created_at, namespace)
                    for a in step.artifacts
                ],
            )  # fmt: skip

    async def record_step(
        self, lease: Lease, step: StepRow, events: Sequence[NewEvent] = (), usage: Sequence[NewUsage] = ()
    ) -> None:
        def record(conn: sqlite3.Connection) -> None:
            self._insert_step_fenced(conn, lease, step)
            self._insert_events(conn, events)
            if usage:
                self._insert_usage(conn, usage)

        await self._write(record)

    async def append_events(self, lease: Lease, events: Sequence[NewEvent]) -> None:
        def append(conn: sqlite3.Connection) -> None:
            self._fence(conn, lease)
            self._insert_events(conn, events)

        if events and self.record_events:
            await self._write(append)

    @staticmethod
    def _insert_usage(conn: sqlite3.Connection, usage: Sequence[NewUsage]) -> None:
        """Usage rows and the run's totals, in the caller's (fenced) transaction."""
        marks = ", ".join("?" * len(USAGE_COLUMNS.split(",")))
        conn.executemany(f"INSERT INTO plait_usage ({USAGE_COLUMNS}) VALUES ({marks})", map(usage_values, usage))
        input_tokens, output_tokens, cost, calls = usage_totals(usage)
        conn.execute(
            "UPDATE plait_runs SET usage_input_tokens = usage_input_tokens + ?, "
            "usage_output_tokens = usage_output_tokens + ?, usage_calls = usage_calls + ?, "
            "usage_cost_nanos = CASE WHEN ? IS NULL THEN usage_cost_nanos ELSE coalesce(usage_cost_nanos, 0) + ? END "
            "WHERE namespace = ? AND id = ?",
            (input_tokens, output_tokens, calls, cost, cost, usage[0].namespace, usage[0].run_id),
        )

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
        def finish(conn: sqlite3.Connection) -> None:
            if last_step is not None:
                self._insert_step_fenced(conn, lease, last_step)
            else:
                self._fence(conn, lease)
            self._insert_events(conn, events)
            if usage:
                self._insert_usage(conn, usage)
            ((parent_run_id,),) = conn.execute(
                "UPDATE plait_runs SET status = ?, output = ?, error = ?, finished_at = ?, updated_at = ?, "
                "owner = NULL, lease_expires_at = NULL, wait_info = NULL WHERE namespace = ? AND id = ? "
                "RETURNING parent_run_id",
                (status, output, error, now, now, lease.namespace, lease.run_id),
            ).fetchall()
            if parent_run_id is not None:  # a parent parked on this child run continues now
                conn.execute(
                    "UPDATE plait_runs SET ready_at = ? WHERE namespace = ? AND id = ? AND status = 'waiting'",
                    (now, lease.namespace, parent_run_id),
                )

        await self._write(finish)

    async def release_run(self, lease: Lease, now: float, ready_at: float | None = None) -> None:
        def release(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE plait_runs SET status = 'pending', owner = NULL, lease_expires_at = NULL, updated_at = ?, "
                "ready_at = coalesce(?, ready_at) WHERE namespace = ? AND id = ? AND lease_token = ? "
                "AND status = 'running'",
                (now, ready_at, lease.namespace, lease.run_id, lease.token),
            )

        await self._write(release)

    async def cancel_run(self, namespace: str, run_id: str, now: float, reason: str | None = None) -> list[str]:
        payload = None if reason is None else json.dumps({"reason": reason})

        def cancel(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "WITH RECURSIVE tree(id) AS (SELECT id FROM plait_runs WHERE id = ? AND namespace = ? "
                "UNION SELECT r.id FROM plait_runs r JOIN tree ON r.namespace = ? AND r.parent_run_id = tree.id) "
                "UPDATE plait_runs SET status = 'cancelled', finished_at = ?, updated_at = ?, owner = NULL, "
                f"lease_expires_at = NULL, cancel_reason = ? WHERE namespace = ? AND id IN (SELECT id FROM tree) "
                f"AND status NOT IN {_TERMINAL_SQL} RETURNING id, workflow_id",
                (run_id, namespace, namespace, now, now, reason, namespace),
            ).fetchall()
            self._insert_events(
                conn, [NewEvent(namespace, row[0], row[1], "run.cancelled", now, payload) for row in rows]
            )
            return [row[0] for row in rows]

        return await self._write(cancel)

    async def reopen_run(self, namespace: str, run_id: str, now: float) -> None:
        def reopen(conn: sqlite3.Connection) -> None:
            # Failed child runs are reopened too, so the retried parent finds them running again.
            rows = conn.execute(
                "WITH RECURSIVE tree(id) AS (SELECT id FROM plait_runs WHERE id = ? AND namespace = ? "
                "UNION SELECT r.id FROM plait_runs r JOIN tree ON r.namespace = ? AND r.parent_run_id = tree.id) "
                "UPDATE plait_runs SET status = 'pending', error = NULL, finished_at = NULL, ready_at = ?, "
                "retried_at = ?, updated_at = ? WHERE namespace = ? AND id IN (SELECT id FROM tree) "
                "AND status = 'failed' RETURNING id, workflow_id",
                (run_id, namespace, namespace, now, now, now, namespace),
            ).fetchall()
            self._insert_events(conn, [NewEvent(namespace, row[0], row[1], "run.retried", now) for row in rows])

        await self._write(reopen)

    async def fork_run(self, run: NewRun, source_run_id: str, step_keys: list[str]) -> RunRow:
        def fork(conn: sqlite3.Connection) -> RunRow:
            conn.execute(
                "INSERT INTO plait_runs (id, namespace, workflow_id, workflow_version, status, input, priority, "
                "metadata, created_at, updated_at, ready_at, queue, concurrency_key, budget, config) "
                "VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.id, run.namespace, run.workflow_id, run.workflow_version, run.input, run.priority,
                    run.metadata, run.created_at, run.created_at, run.ready_at, run.queue, run.concurrency_key,
                    run.budget,
                    run.config,
                ),
            )  # fmt: skip
            # The reused steps keep their artifacts (a blob is shared, not copied: prune keeps referenced blobs).
            conn.execute(
                f"INSERT INTO plait_artifacts ({ARTIFACT_COLUMNS}) SELECT ?, key, step_id, step_key, kind, "
                "content_type, size, data, blob, created_at, namespace FROM plait_artifacts WHERE namespace = ? "
                "AND run_id = ? AND step_key IN (SELECT value FROM json_each(?))",
                (run.id, run.namespace, source_run_id, json.dumps(step_keys)),
            )
            conn.execute(
                f"INSERT INTO plait_steps (namespace, {STEP_COLUMNS}) SELECT namespace, ?, step_key, step_id, attempt, "
                "status, input, output, error, started_at, finished_at FROM plait_steps WHERE namespace = ? "
                "AND run_id = ? AND output IS NOT NULL AND step_key IN (SELECT value FROM json_each(?))",
                (run.id, run.namespace, source_run_id, json.dumps(step_keys)),
            )
            self._carry_usage(conn, run.namespace, run.id, source_run_id, step_keys)
            row = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM plait_runs WHERE namespace = ? AND id = ?", (run.namespace, run.id)
            ).fetchone()
            self._insert_events(conn, [lifecycle(run, "run.created", {"rerun_of": source_run_id}, run.created_at)])
            return RunRow(*row)

        return await self._write(fork)

    @staticmethod
    def _carry_usage(
        conn: sqlite3.Connection, namespace: str, run_id: str, source_run_id: str, step_keys: list[str]
    ) -> None:
        """Copy the reused steps' usage (marked carried) and start the new run's totals at it."""
        conn.execute(
            f"INSERT INTO plait_usage ({USAGE_COLUMNS}, carried) SELECT "
            + USAGE_COLUMNS.replace("run_id", "?", 1)
            + ", 1 FROM plait_usage WHERE namespace = ? AND run_id = ? "
            "AND step_key IN (SELECT value FROM json_each(?))",
            (run_id, namespace, source_run_id, json.dumps(step_keys)),
        )
        conn.execute(
            "UPDATE plait_runs SET (usage_input_tokens, usage_output_tokens, usage_cost_nanos, usage_calls) = "
            "(SELECT coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), sum(cost_nanos), count(*) "
            "FROM plait_usage WHERE namespace = ? AND run_id = ?) WHERE namespace = ? AND id = ?",
            (namespace, run_id, namespace, run_id),
        )

    async def load_waits(self, namespace: str, run_id: str) -> list[WaitRow]:
        rows = self._read(
            f"SELECT {WAIT_COLUMNS} FROM plait_waits WHERE namespace = ? AND run_id = ?", (namespace, run_id)
        )
        return [WaitRow(*row) for row in rows]

    async def park_run(self, lease: Lease, park: Park, now: float, events: Sequence[NewEvent] = ()) -> None:
        def do_park(conn: sqlite3.Connection) -> None:
            self._fence(conn, lease)
            self._insert_events(conn, events)
            if park.wait is not None:
                wait = park.wait
                conn.execute(
                    f"INSERT OR REPLACE INTO plait_waits (namespace, {WAIT_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        lease.namespace, wait.run_id, wait.step_key, wait.kind, wait.wake_at, wait.deadline,
                        wait.event_name, wait.state, wait.created_at,
                    ),
                )  # fmt: skip
            if park.clear_events is not None:
                conn.execute(
                    "DELETE FROM plait_inbox WHERE namespace = ? AND run_id = ? AND name = ?",
                    (lease.namespace, lease.run_id, park.clear_events),
                )
            ready_at = park.ready_at
            if park.wake_on is not None:
                raced = conn.execute(
                    "SELECT 1 FROM plait_inbox WHERE namespace = ? AND run_id = ? AND name = ? "
                    "AND consumed_by IS NULL LIMIT 1",
                    (lease.namespace, lease.run_id, park.wake_on),
                ).fetchone()
                ready_at = now if raced else ready_at
            if park.wake_if_done is not None:
                done = conn.execute(
                    f"SELECT 1 FROM plait_runs WHERE namespace = ? AND id = ? AND status IN {_TERMINAL_SQL}",
                    (lease.namespace, park.wake_if_done),
                ).fetchone()
                ready_at = now if done else ready_at
            conn.execute(
                "UPDATE plait_runs SET status = ?, ready_at = ?, wait_info = ?, owner = NULL, lease_expires_at = NULL, "
                "updated_at = ? WHERE namespace = ? AND id = ?",
                (park.status, ready_at, park.wait_info, now, lease.namespace, lease.run_id),
            )

        await self._write(do_park)

    async def consume_event(
        self, lease: Lease, name: str, step_key: str, record: StepRow | None, events: Sequence[NewEvent] = ()
    ) -> str | None:
        def consume(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT id, payload FROM plait_inbox WHERE namespace = ? AND run_id = ? AND name = ? "
                "AND consumed_by IS NULL ORDER BY id LIMIT 1",
                (lease.namespace, lease.run_id, name),
            ).fetchone()
            if row is None:
                return None
            self._fence(conn, lease)
            conn.execute("UPDATE plait_inbox SET consumed_by = ? WHERE id = ?", (step_key, row[0]))
            if record is not None:
                self._insert_step(conn, lease.namespace, replace(record, output=row[1]))
            self._insert_events(conn, events)
            return str(row[1])

        return await self._write(consume)

    async def next_ready_at(self, namespace: str, now: float) -> float | None:
        rows = self._read(
            f"SELECT min(ready_at) FROM plait_runs WHERE namespace = ? AND status IN {_CLAIMABLE_SQL} AND ready_at > ?",
            (namespace, now),
        )
        return None if rows[0][0] is None else float(rows[0][0])

    async def prune(self, namespace: str, finished_before: float, limit: int) -> int:
        def prune(conn: sqlite3.Connection) -> int:
            ids = [
                row[0]
                for row in conn.execute(
                    f"SELECT id FROM plait_runs WHERE namespace = ? AND status IN {_TERMINAL_SQL} "
                    "AND finished_at < ? LIMIT ?",
                    (namespace, finished_before, limit),
                ).fetchall()
            ]
            chosen = json.dumps(ids)
            for table in (
                "plait_steps",
                "plait_waits",
                "plait_inbox",
                "plait_events",
                "plait_usage",
                "plait_artifacts",
            ):
                # The newest event stays: ids are the largest plus one, so deleting it would hand its id out again.
                newest = " AND id < (SELECT max(id) FROM plait_events)" if table == "plait_events" else ""
                conn.execute(
                    f"DELETE FROM {table} WHERE namespace = ? AND run_id IN (SELECT value FROM json_each(?)){newest}",
                    (namespace, chosen),
                )
            conn.execute(
                "DELETE FROM plait_runs WHERE namespace = ? AND id IN (SELECT value FROM json_each(?))",
                (namespace, chosen),
            )
            return len(ids)

        return await self._write(prune)

    async def mark_waiting_for_version(self, namespace: str, refs: list[str], ready_before: float) -> int:
        stranded = (
            "WHERE namespace = ? AND status IN ('pending', 'waiting') AND owner IS NULL AND ready_at <= ? "
            "AND status_message IS NULL "
            "AND workflow_id || '@' || workflow_version NOT IN (SELECT value FROM json_each(?))"
        )
        params = (namespace, ready_before, json.dumps(refs))

        def mark(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE plait_runs SET status_message = 'waiting for a worker that has workflow ''' || workflow_id "
                f"|| ''' version ''' || workflow_version || ''' registered' {stranded}",
                params,
            )
            return cursor.rowcount

        # A plain read first: the worker asks on the first poll after each claim, and a write (the lock
        # and an fsync) there would sit between the claimed runs' commits; there is rarely anything to mark.
        if not self._read(f"SELECT 1 FROM plait_runs {stranded} LIMIT 1", params):
            return 0
        return await self._write(mark)
