"""Stored artifacts, in portable SQL over any store (rows are written with their step, in the backends)."""

from __future__ import annotations

from typing import Any

from plait.store.base import ArtifactRow, Store

COLUMNS = "run_id, key, step_id, step_key, kind, content_type, size, data, blob, created_at"
LISTED = "run_id, key, step_id, step_key, kind, content_type, size, NULL, blob, created_at"


def _row(values: tuple[Any, ...]) -> ArtifactRow:
    data = values[7]
    run_id, key, step_id, step_key, kind, content_type, size = values[:7]
    blob, created_at = values[8:]
    # psycopg hands back memoryview for BYTEA, sqlite3 bytes for BLOB.
    return ArtifactRow(
        run_id,
        key,
        step_id,
        step_key,
        kind,
        content_type,
        int(size),
        None if data is None else bytes(data),
        blob,
        float(created_at),
    )


async def listed(store: Store, namespace: str, run_id: str) -> list[ArtifactRow]:
    """The run's artifacts without their data, oldest first."""
    rows = await store.sql(
        f"SELECT {LISTED} FROM plait_artifacts WHERE namespace = ? AND run_id = ? ORDER BY created_at, key",
        (namespace, run_id),
    )
    return [_row(row) for row in rows]


async def one(store: Store, namespace: str, run_id: str, key: str) -> ArtifactRow | None:
    rows = await store.sql(
        f"SELECT {COLUMNS} FROM plait_artifacts WHERE namespace = ? AND run_id = ? AND key = ?",
        (namespace, run_id, key),
    )
    return _row(rows[0]) if rows else None


async def blobs_in_use(store: Store, names: list[str]) -> set[str]:
    """Which of ``names`` an artifact row still refers to (a blob may be shared by a rerun's copy)."""
    used: set[str] = set()
    for start in range(0, len(names), 500):
        chunk = names[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        rows = await store.sql(f"SELECT blob FROM plait_artifacts WHERE blob IN ({marks})", chunk)
        used.update(str(row[0]) for row in rows)
    return used


async def unfinished_runs(store: Store, namespace: str) -> list[str]:
    """Ids of the namespace's runs that have not ended: their steps may still commit a blob written now."""
    rows = await store.sql(
        "SELECT id FROM plait_runs WHERE namespace = ? AND status NOT IN ('succeeded', 'failed', 'cancelled')",
        (namespace,),
    )
    return [str(row[0]) for row in rows]
