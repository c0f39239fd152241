"""Stored model usage: a run's calls, reports over many runs, and budget changes, in portable SQL."""

from __future__ import annotations

from dataclasses import dataclass

from plait.store.base import Store

# What a report groups by, as SQL over plait_usage.
GROUP_EXPRESSIONS = {
    "workflow": "workflow_id",
    "model": "model",
    "day": "day",
    "step": "workflow_id || '/' || step_id",
}


@dataclass(frozen=True)
class CallRow:
    """A stored call, as a run's and its steps' usage need it."""

    step_key: str
    attempt: int
    model: str
    input_tokens: int
    output_tokens: int
    cost_nanos: int | None


@dataclass(frozen=True)
class ReportRow:
    key: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_nanos: int | None
    calls: int
    runs: int
    unknown_cost_calls: int


async def run_calls(store: Store, namespace: str, run_id: str) -> list[CallRow]:
    """Every call stored for the run, carried ones included (they make up its totals)."""
    rows = await store.sql(
        "SELECT step_key, attempt, model, input_tokens, output_tokens, cost_nanos FROM plait_usage "
        "WHERE namespace = ? AND run_id = ? ORDER BY created_at, step_key, attempt, seq",
        (namespace, run_id),
    )
    return [
        CallRow(str(r[0]), int(r[1]), str(r[2]), int(r[3]), int(r[4]), None if r[5] is None else int(r[5]))
        for r in rows
    ]


async def report(
    store: Store, namespace: str, group_by: str, workflow_id: str | None, since: float | None, until: float | None
) -> list[ReportRow]:
    """Totals per group over calls made in ``[since, until)``; carried calls are not counted again."""
    expression = GROUP_EXPRESSIONS[group_by]
    clauses = ["namespace = ?", "carried = 0"]
    params: list[object] = [namespace]
    for clause, value in (("workflow_id = ?", workflow_id), ("created_at >= ?", since), ("created_at < ?", until)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    rows = await store.sql(
        f"SELECT {expression}, sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), "
        "sum(cache_write_tokens), sum(reasoning_tokens), sum(cost_nanos), count(*), count(DISTINCT run_id), "
        f"sum(CASE WHEN cost_nanos IS NULL THEN 1 ELSE 0 END) FROM plait_usage WHERE {' AND '.join(clauses)} "
        f"GROUP BY {expression} ORDER BY {expression}",
        params,
    )
    return [
        ReportRow(
            key=str(r[0]),
            input_tokens=int(r[1]),
            output_tokens=int(r[2]),
            cache_read_tokens=int(r[3]),
            cache_write_tokens=int(r[4]),
            reasoning_tokens=int(r[5]),
            cost_nanos=None if r[6] is None else int(r[6]),
            calls=int(r[7]),
            runs=int(r[8]),
            unknown_cost_calls=int(r[9]),
        )
        for r in rows
    ]


async def set_budget(store: Store, namespace: str, run_id: str, budget: str, now: float) -> str | None:
    """Store the run's new budget; a run suspended by its budget becomes ready. Returns its status (None: no run)."""
    rows = await store.sql(
        "UPDATE plait_runs SET budget = ?, updated_at = ?, "
        "ready_at = CASE WHEN status = 'suspended' AND wait_info LIKE ? THEN ? ELSE ready_at END, "
        "status = CASE WHEN status = 'suspended' AND wait_info LIKE ? THEN 'waiting' ELSE status END "
        "WHERE id = ? AND namespace = ? RETURNING status",
        (budget, now, _SUSPENDED_BY_BUDGET, now, _SUSPENDED_BY_BUDGET, run_id, namespace),
        write=True,
    )
    return str(rows[0][0]) if rows else None


# The wait_info of a run its budget suspended (the executor writes "kind" first).
_SUSPENDED_BY_BUDGET = '{"kind": "budget"%'
