"""Helpers for testing workflows: a clock that skips time."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class FakeClock:
    """A clock that only moves when told: ``advance(days=7)`` makes a week pass at once.

    Pass it as ``Engine(..., clock=FakeClock())``. Everything due by the new
    time (retry back-offs, delayed starts) runs right after ``advance``.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2030, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("FakeClock(start=...) must be timezone-aware")
        self._lock = threading.Lock()
        self._sleepers: list[tuple[datetime, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._callbacks: list[Callable[[], None]] = []

    def now(self) -> datetime:
        with self._lock:
            return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._sleepers.append((self._now + timedelta(seconds=seconds), loop, future))
        await future

    def next_wakeup(self) -> datetime | None:
        """When the earliest pending ``sleep`` ends (None if nothing sleeps): tests wait for it before advancing."""
        with self._lock:
            return min((deadline for deadline, _, _ in self._sleepers), default=None)

    def on_advance(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._callbacks.append(callback)

    def advance(
        self,
        delta: timedelta | None = None,
        *,
        days: float = 0,
        hours: float = 0,
        minutes: float = 0,
        seconds: float = 0,
    ) -> datetime:
        """Move time forward and wake whatever became due; returns the new time."""
        step = (delta or timedelta()) + timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        if step < timedelta():
            raise ValueError("FakeClock cannot go back in time")
        with self._lock:
            self._now += step
            due = [s for s in self._sleepers if s[0] <= self._now]
            self._sleepers = [s for s in self._sleepers if s[0] > self._now]
            callbacks = list(self._callbacks)
            now = self._now
        for _, loop, future in due:
            with contextlib.suppress(RuntimeError):  # an engine closed since it slept: nothing to wake
                loop.call_soon_threadsafe(_resolve, future)
        for callback in callbacks:
            callback()
        return now


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


__all__ = ["FakeClock"]
