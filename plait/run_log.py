"""The event log of one execution of a run: what happened, written with the change it describes.

Step events ride on the step's own commit (started, logs, progress, then
completed or failed), so the log costs no extra transaction per step. Logs
and progress of a step that runs for a while are flushed about every 0.2 s,
with its ``step.started`` first, so live readers see them while it works.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from typing import Any

from plait.clock import Clock
from plait.store.base import Lease, NewEvent, Park, RunRow, Store

FLUSH_AFTER_SECONDS = 0.2

# json.dumps(payload, default=str) builds a new encoder per call; one shared encoder writes the same text.
_PAYLOAD_JSON = json.JSONEncoder(default=str)

# Types plait writes itself; ctx.emit may not use them.
RESERVED_PREFIXES = ("run.", "step.", "timer.", "event.", "state.")


def payload_json(payload: dict[str, Any]) -> str:
    """The stored JSON of an event's payload."""
    duration = payload.get("duration_ms")
    if len(payload) == 1 and type(duration) is float and math.isfinite(duration):
        # Most steps' outcome: written directly, the same text as the encoder's (a finite float is its repr).
        return f'{{"duration_ms": {duration!r}}}'
    return _PAYLOAD_JSON.encode(payload)


def public_error(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """An error as events show it: without the traceback (it stays on the step record)."""
    return None if error is None else {k: v for k, v in error.items() if k != "traceback"}


class RunLog:
    """Buffers and writes the events of one run while this worker executes it."""

    def __init__(self, run: RunRow, store: Store, clock: Clock, lease: Lease) -> None:
        self.enabled = store.record_events
        self._run = run
        self._store = store
        self._clock = clock
        self._lease = lease
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._lock = threading.Lock()  # ctx.log runs in step threads
        self._pending: list[NewEvent] = []
        self._started: dict[tuple[str, int], tuple[str, float]] = {}
        self._written_starts: set[tuple[str, int]] = set()
        self._flush_scheduled = False
        self._flush_timer: asyncio.TimerHandle | None = None
        self._flush_task: asyncio.Future[None] | None = None
        self._write_order = asyncio.Lock()  # a flush and a step commit of this run must not overtake each other

    def event(
        self,
        type_: str,
        *,
        payload: dict[str, Any] | None = None,
        step_id: str | None = None,
        key: str | None = None,
        attempt: int | None = None,
        at: float | None = None,
    ) -> NewEvent:
        return NewEvent(
            namespace=self._run.namespace,
            run_id=self._run.id,
            workflow_id=self._run.workflow_id,
            type=type_,
            created_at=self._clock.now().timestamp() if at is None else at,
            payload=None if payload is None else payload_json(payload),
            step_id=step_id,
            step_key=key,
            attempt=attempt,
        )

    # -- from steps (any thread) -----------------------------------------------

    def begin(self, key: str, step_id: str, attempt: int, started: float) -> None:
        self._started[(key, attempt)] = (step_id, started)

    def add(self, key: str, step_id: str, attempt: int, type_: str, payload: dict[str, Any]) -> None:
        """Buffer a log line, progress or custom event of a running step; written within about 0.2 s."""
        event = self.event(type_, payload=payload, step_id=step_id, key=key, attempt=attempt)
        with self._lock:
            self._pending.append(event)
        # A flush already due takes this event too (it clears the flag before it takes the pending
        # events): skipping the wake-up saves a loop round trip per event of a busy step.
        if not self._flush_scheduled:
            if threading.get_ident() == self._loop_thread:  # an async step: no need to wake our own loop
                self._schedule_flush()
            else:
                self._loop.call_soon_threadsafe(self._schedule_flush)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._flush_timer = self._loop.call_later(FLUSH_AFTER_SECONDS, self._start_flush)

    def _start_flush(self) -> None:
        self._flush_timer = None
        with self._lock:
            if not self._pending:  # the step's commit took them already: no task, no write
                self._flush_scheduled = False
                return
        self._flush_task = asyncio.ensure_future(self.flush())

    def _cancel_flush(self) -> None:
        """The run's last write takes every pending event: a flush due later has nothing to do."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
            self._flush_scheduled = False

    async def flush(self) -> None:
        self._flush_scheduled = False
        async with self._write_order:
            events = self._take(None)
            if events:
                try:
                    await self._store.append_events(self._lease, events)
                except BaseException:  # noqa: BLE001 - the run's own commit reports a lost lease or a cancel
                    return

    def _take(self, key: str | None) -> list[NewEvent]:
        """Pending events (of one step, or all), each step's ``step.started`` first if not yet written."""
        # The common case, a step that logged nothing: no lock, no copies. (An event added by another
        # thread just after this check is as if added just after a locked take: it waits for the next.)
        if not self._pending:
            return []
        with self._lock:
            taken = [e for e in self._pending if key is None or e.step_key == key]
            self._pending = [e for e in self._pending if not (key is None or e.step_key == key)]
        events: list[NewEvent] = []
        for event in taken:
            events += self._start_of(event.step_key or "", event.attempt or 1)
            events.append(event)
        return events

    def _start_of(self, key: str, attempt: int) -> list[NewEvent]:
        if (key, attempt) in self._written_starts or (key, attempt) not in self._started:
            return []
        self._written_starts.add((key, attempt))
        step_id, started = self._started[(key, attempt)]
        return [self.event("step.started", step_id=step_id, key=key, attempt=attempt, at=started)]

    # -- for the executor and the worker ---------------------------------------

    def writing(self) -> asyncio.Lock:
        return self._write_order

    def step_events(
        self,
        key: str,
        step_id: str,
        attempt: int,
        started: float,
        type_: str,
        payload: dict[str, Any] | None,
        at: float | None = None,
    ) -> list[NewEvent]:
        """What a step's commit writes: started (unless flushed already), its pending events, the outcome.

        ``at`` is when the outcome happened (the step row's ``finished_at``); now if not given.
        """
        if not self.enabled:
            return []
        self._started.setdefault((key, attempt), (step_id, started))
        events = self._start_of(key, attempt) + self._take(key)
        events.append(self.event(type_, payload=payload, step_id=step_id, key=key, attempt=attempt, at=at))
        return events

    def park_events(self, park: Park) -> list[NewEvent]:
        if not self.enabled:
            return []
        wait = json.loads(park.wait_info)
        self._cancel_flush()
        events = self._take(None)
        if wait.get("kind") in ("sleep", "retry"):
            events.append(self.event("timer.set", payload=wait, step_id=wait.get("step_id")))
        type_ = {"suspended": "run.suspended", "pending": "run.handed_back"}.get(park.status, "run.waiting")
        events.append(self.event(type_, payload=wait, step_id=wait.get("step_id")))
        return events

    def finish_events(self, status: str, output_json: str | None, error: dict[str, Any] | None) -> list[NewEvent]:
        if not self.enabled:
            return []
        self._cancel_flush()
        events = self._take(None)
        if status == "succeeded":
            event = self.event("run.completed")
            events.append(NewEvent(**{**event.__dict__, "payload": f'{{"output": {output_json or "null"}}}'}))
        else:
            events.append(self.event("run.failed", payload={"error": public_error(error)}))
        return events
