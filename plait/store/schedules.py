"""Stored cron schedules, in portable SQL over any store."""

from __future__ import annotations

from dataclasses import dataclass

from plait.store.base import Store

COLUMNS = (
    "id, namespace, workflow_id, cron, timezone, input, catch_up, paused, next_fire_at, created_at, start_at, until"
)


@dataclass(frozen=True)
class ScheduleRow:
    id: str
    namespace: str
    workflow_id: str
    cron: str
    timezone: str
    input: str
    catch_up: str
    paused: int
    next_fire_at: float
    created_at: float
    start_at: float | None = None
    until: float | None = None


async def upsert(store: Store, row: ScheduleRow) -> ScheduleRow:
    """Create the schedule, or update its definition keeping its state; returns the stored row.

    Apps declare their schedules at every start, so an unchanged declaration
    must keep ``next_fire_at`` (the missed times catch-up fires after
    downtime) and ``paused``. A new cron or time zone counts from now; a new
    workflow, input or catch-up policy applies from the next due time. A new
    ``start_at`` counts from itself; ``until`` applies to the next due time.
    """
    rows = await store.sql(
        f"INSERT INTO plait_schedules ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (namespace, id) DO UPDATE SET workflow_id = excluded.workflow_id, cron = excluded.cron, "
        "timezone = excluded.timezone, input = excluded.input, catch_up = excluded.catch_up, "
        "until = excluded.until, start_at = excluded.start_at, "
        "next_fire_at = CASE WHEN plait_schedules.cron = excluded.cron "
        "AND plait_schedules.timezone = excluded.timezone "
        "AND plait_schedules.start_at IS NOT DISTINCT FROM excluded.start_at "
        "THEN plait_schedules.next_fire_at ELSE excluded.next_fire_at END "
        f"RETURNING {COLUMNS}",
        (
            row.id, row.namespace, row.workflow_id, row.cron, row.timezone, row.input, row.catch_up, row.paused,
            row.next_fire_at, row.created_at, row.start_at, row.until,
        ),
        write=True,
    )  # fmt: skip
    return ScheduleRow(*rows[0])


async def listed(store: Store, namespace: str) -> list[ScheduleRow]:
    rows = await store.sql(f"SELECT {COLUMNS} FROM plait_schedules WHERE namespace = ? ORDER BY id", (namespace,))
    return [ScheduleRow(*row) for row in rows]


async def due(store: Store, namespace: str, now: float) -> list[ScheduleRow]:
    rows = await store.sql(
        f"SELECT {COLUMNS} FROM plait_schedules WHERE namespace = ? AND paused = 0 AND next_fire_at <= ? "
        "AND (until IS NULL OR next_fire_at <= until)",
        (namespace, now),
    )
    return [ScheduleRow(*row) for row in rows]


async def next_due(store: Store, namespace: str) -> float | None:
    rows = await store.sql(
        "SELECT min(next_fire_at) FROM plait_schedules WHERE namespace = ? AND paused = 0 "
        "AND (until IS NULL OR next_fire_at <= until)",
        (namespace,),
    )
    return None if rows[0][0] is None else float(rows[0][0])


async def advance(store: Store, namespace: str, schedule_id: str, seen: float, following: float) -> None:
    """Move the schedule to its next due time, unless another scheduler already did."""
    await store.sql(
        "UPDATE plait_schedules SET next_fire_at = ? WHERE namespace = ? AND id = ? AND next_fire_at = ?",
        (following, namespace, schedule_id, seen),
        write=True,
    )


async def set_paused(store: Store, namespace: str, schedule_id: str, paused: bool, next_fire_at: float) -> bool:
    rows = await store.sql(
        "UPDATE plait_schedules SET paused = ?, next_fire_at = ? WHERE namespace = ? AND id = ? RETURNING id",
        (1 if paused else 0, next_fire_at, namespace, schedule_id),
        write=True,
    )
    return bool(rows)


async def remove(store: Store, namespace: str, schedule_id: str) -> bool:
    rows = await store.sql(
        "DELETE FROM plait_schedules WHERE namespace = ? AND id = ? RETURNING id", (namespace, schedule_id), write=True
    )
    return bool(rows)
