"""The statements of a running run's writes on PostgreSQL, each one round trip.

A step's commit is one statement: the lease fence (the run's row, locked only
while the lease holds), the step row, its events, usage and artifacts as CTEs.
The texts are cached per shape (how many events, usage or artifacts), so the
driver prepares each shape once.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from plait.store.base import (
    USAGE_COLUMNS,
    ArtifactRow,
    NewEvent,
    NewUsage,
    StepRow,
    usage_totals,
    usage_values,
)

ARTIFACT_COLUMNS = "run_id, key, step_id, step_key, kind, content_type, size, data, blob, created_at, namespace"
STEP_COLUMNS = "run_id, step_key, step_id, attempt, status, input, output, error, started_at, finished_at"


def step_values(namespace: str, step: StepRow) -> tuple[Any, ...]:
    return (
        namespace, step.run_id, step.step_key, step.step_id, step.attempt, step.status, step.input, step.output,
        step.error, step.started_at, step.finished_at,
    )  # fmt: skip


# The lease fence of every write of a running run: its row, locked until commit, only while the lease holds.
FENCE = (
    "SELECT id, namespace FROM plait_runs WHERE namespace = %s AND id = %s AND status = 'running' "
    "AND lease_token = %s FOR UPDATE"
)
# How many events, and whether all are the fenced run's own (the short form of ``_fenced_events``).
EventsShape = tuple[int, bool]
_RUN_EVENT_ROW = "(%s::text, %s::text, %s::text, %s::int, %s::text, %s::float8, {n})"


@functools.lru_cache(maxsize=128)
def events_cte_sql(shape: EventsShape | None) -> str:
    """``, ev AS (INSERT ...)`` writing events only if the fence held ("" without events)."""
    if shape is None:
        return ""
    count, own_run = shape
    if not own_run:
        return f", ev AS ({events_insert_sql('WHERE EXISTS (SELECT 1 FROM fence)')})"
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
def record_step_sql(shape: EventsShape | None, usage_sql: str, art_sql: str) -> str:
    return (
        f"WITH fence AS ({FENCE}), step AS (INSERT INTO plait_steps (namespace, {STEP_COLUMNS}) "
        "SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s FROM fence RETURNING 1)"
        f"{events_cte_sql(shape)}{usage_sql}{art_sql} SELECT 1 FROM step"
    )


@functools.lru_cache(maxsize=256)
def finish_run_sql(shape: EventsShape | None, usage_sql: str, art_sql: str) -> str:
    return (
        f"WITH fence AS ({FENCE}), "
        f"step AS (INSERT INTO plait_steps (namespace, {STEP_COLUMNS}) "
        "SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s FROM fence WHERE %s RETURNING 1), "
        "done AS (UPDATE plait_runs r SET status = %s, output = %s, error = %s, finished_at = %s, "
        "updated_at = %s, owner = NULL, lease_expires_at = NULL, wait_info = NULL, "
        f"{_TOTALS_SET} FROM fence "
        "WHERE r.namespace = fence.namespace AND r.id = fence.id RETURNING r.parent_run_id, fence.namespace), "
        "parent AS (UPDATE plait_runs p SET ready_at = %s FROM done WHERE p.namespace = done.namespace "
        f"AND p.id = done.parent_run_id AND p.status = 'waiting' RETURNING p.id){events_cte_sql(shape)}"
        f"{usage_sql}{art_sql} SELECT done.namespace, (SELECT count(*) FROM parent) FROM done"
    )


_ARTIFACT_ROW = (
    "(%s::text, %s::text, %s::text, %s::text, %s::text, %s::text, %s::bigint, %s::bytea, %s::text, %s::float8, "
    "%s::text)"
)


def artifacts_cte(artifacts: Sequence[ArtifactRow]) -> tuple[str, list[Any]]:
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


def usage_cte(usage: Sequence[NewUsage], *, with_totals: bool) -> tuple[str, list[Any]]:
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


def events_insert(events: Sequence[NewEvent], condition: str) -> tuple[str, list[Any]]:
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
    return events_insert_sql(condition), list(columns)


@functools.lru_cache(maxsize=16)
def events_insert_sql(condition: str) -> str:
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
