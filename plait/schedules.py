"""Cron schedules: pure schedule math, and the public ``Schedule`` model.

Each due time fires exactly once however many engines run: the run it starts
has the idempotency key ``schedule:<id>:<due time>``, so a second scheduler
that reaches the same due time finds the run already there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel

from plait.errors import InputValidationError

CatchUp = Literal["skip", "all"]

# With catch_up="all" after a long outage, at most this many missed times fire at once.
MAX_CATCH_UP = 1000


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InputValidationError(f"unknown time zone {name!r}: use an IANA name like 'Europe/Paris'") from exc


def check_cron(cron: str) -> None:
    if not croniter.is_valid(cron):
        raise InputValidationError(
            f"invalid cron expression {cron!r}: use five fields (minute hour day month weekday), "
            "or six with seconds first, e.g. '0 6 * * 1-5'"
        )


def next_fire(cron: str, timezone: str, after: datetime) -> datetime:
    """The first due time strictly after ``after``, in UTC; wall-clock times follow the zone's DST."""
    local = after.astimezone(zone(timezone))
    due: datetime = croniter(cron, local).get_next(datetime)
    return due.astimezone(UTC)


def due_times(cron: str, timezone: str, next_due: datetime, now: datetime, catch_up: CatchUp) -> list[datetime]:
    """The due times to fire now: all missed ones (up to MAX_CATCH_UP), or only the latest with "skip"."""
    times: list[datetime] = []
    due = next_due
    while due <= now and len(times) < MAX_CATCH_UP:
        times.append(due)
        due = next_fire(cron, timezone, due)
    return times if catch_up == "all" else times[-1:]


class Schedule(BaseModel):
    """A stored cron schedule of a workflow."""

    id: str
    workflow_id: str
    cron: str
    timezone: str
    input: Any
    catch_up: CatchUp
    paused: bool
    next_fire_at: datetime
    created_at: datetime
    start_at: datetime | None = None
    until: datetime | None = None
