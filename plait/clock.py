"""Time as plait sees it: every timestamp and timer goes through a ``Clock``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


def to_seconds(value: timedelta | float | int) -> float:
    """Durations are accepted as a ``timedelta`` or as seconds."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


class Clock(Protocol):
    """Workflow time: timestamps, delays and retry back-off."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...

    def on_advance(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever time jumps (fake clocks only); real clocks ignore it."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def on_advance(self, callback: Callable[[], None]) -> None:
        return None


def wall_seconds() -> float:
    """Real seconds since the epoch, for leases.

    Leases measure whether a process is alive, which is physical time even when
    a test fakes workflow time: a fake jump of a week must not expire live leases.
    """
    return time.time()
