"""The WHERE and ORDER BY of run listings, shared by both backends (only the placeholder differs).

Every order is a keyset over (sort key, id), so a cursor stays valid while
runs are added: the next page starts strictly after the last row seen.
"""

from __future__ import annotations

from typing import Any

from plait.store.base import RunFilter

# order name -> (sort key expression, direction); unfinished runs sort as finished at 0, i.e. last.
RUN_ORDERS: dict[str, tuple[str, str]] = {
    "-created": ("created_at", "DESC"),
    "created": ("created_at", "ASC"),
    "-finished": ("coalesce(finished_at, 0)", "DESC"),
}


# The recipe id a plan recorded in a run's metadata, in each backend's JSON dialect (by placeholder).
_RECIPE_OF_RUN = {
    "?": "json_extract(metadata, '$.\"plait.recipe\".id') = ?",
    "%s": "metadata::jsonb -> 'plait.recipe' ->> 'id' = %s",
}


def sort_key_of(order: str, created_at: float, finished_at: float | None) -> float:
    """The value of a row's sort key under ``order``, for the cursor after it."""
    return (finished_at or 0.0) if order == "-finished" else created_at


def run_filter_sql(namespace: str, where: RunFilter, mark: str) -> tuple[list[str], list[Any]]:
    """WHERE clauses (joined with AND) and their parameters; ``mark`` is the driver's placeholder."""
    clauses = [f"namespace = {mark}"]
    params: list[Any] = [namespace]
    if where.workflow_id is not None:
        clauses.append(f"workflow_id = {mark}")
        params.append(where.workflow_id)
    statuses = [*where.statuses, *([where.status] if where.status is not None else [])]
    if statuses:
        clauses.append(f"status IN ({', '.join([mark] * len(statuses))})")
        params.extend(statuses)
    if where.waiting_for_version:
        clauses.append("status IN ('pending', 'waiting') AND status_message IS NOT NULL")
    if where.parent_run_id is not None:
        clauses.append(f"parent_run_id = {mark}")
        params.append(where.parent_run_id)
    if where.idempotency_key is not None:
        clauses.append(f"idempotency_key = {mark}")
        params.append(where.idempotency_key)
    if where.recipe is not None:
        clauses.append(_RECIPE_OF_RUN[mark])
        params.append(where.recipe)
    return clauses, params


def run_listing_sql(
    namespace: str, where: RunFilter, limit: int, after: tuple[float, str] | None, mark: str, columns: str
) -> tuple[str, list[Any]]:
    """The SELECT of one page of runs in ``where.order``, after the keyset ``after``."""
    clauses, params = run_filter_sql(namespace, where, mark)
    key, direction = RUN_ORDERS[where.order]
    if after is not None:
        beyond = "<" if direction == "DESC" else ">"
        clauses.append(f"({key} {beyond} {mark} OR ({key} = {mark} AND id {beyond} {mark}))")
        params.extend([after[0], after[0], after[1]])
    query = (
        f"SELECT {columns} FROM plait_runs WHERE {' AND '.join(clauses)} "
        f"ORDER BY {key} {direction}, id {direction} LIMIT {mark}"
    )
    return query, [*params, limit]
