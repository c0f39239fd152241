"""Engine methods for starting runs by time: cron schedules, and ``tick`` for hosts driven from outside."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from plait.clock import to_seconds
from plait.errors import InputValidationError, RunNotFound, WorkflowDefinitionError
from plait.new_runs import new_run_row
from plait.payloads import validate_input
from plait.schedules import CatchUp, Schedule, check_cron, due_times, next_fire, zone
from plait.store import schedules as table
from plait.workflow.graph import Workflow

if TYPE_CHECKING:
    from plait.clock import Clock
    from plait.loop_thread import LoopThread
    from plait.store.base import RunRow, Store
    from plait.worker import Worker

log = logging.getLogger("plait.schedules")


class TickSummary(BaseModel):
    """What one ``engine.tick()`` did."""

    schedules_fired: int
    runs_processed: int
    more_ready: bool


def _schedule(row: table.ScheduleRow) -> Schedule:
    return Schedule(
        id=row.id,
        workflow_id=row.workflow_id,
        cron=row.cron,
        timezone=row.timezone,
        input=json.loads(row.input),
        catch_up=row.catch_up,  # type: ignore[arg-type]
        paused=bool(row.paused),
        next_fire_at=datetime.fromtimestamp(row.next_fire_at, UTC),
        created_at=datetime.fromtimestamp(row.created_at, UTC),
        start_at=None if row.start_at is None else datetime.fromtimestamp(row.start_at, UTC),
        until=None if row.until is None else datetime.fromtimestamp(row.until, UTC),
    )


def _moment(value: datetime | None, name: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InputValidationError(f"{name} must be a time-zone-aware datetime, e.g. datetime(2030, 1, 1, tzinfo=UTC)")
    return value.timestamp()


def first_fire(cron: str, timezone: str, now: datetime, start_at: float | None) -> datetime:
    """The next due time after ``now``, and not before ``start_at`` (which may itself be due)."""
    if start_at is not None and start_at > now.timestamp():
        # next_fire is strictly after its argument: step back a hair so a due time at start_at counts.
        return next_fire(cron, timezone, datetime.fromtimestamp(start_at - 0.001, UTC))
    return next_fire(cron, timezone, now)


class SchedulesMixin:
    """Part of ``Engine``: ``schedule`` and friends, firing due schedules, and ``tick``."""

    # Provided by Engine.
    _loop: LoopThread
    _store: Store
    _worker: Worker
    namespace: str
    clock: Clock

    def get_workflow(self, workflow_id: str, version: str | None = None) -> Workflow[Any, Any]:
        raise NotImplementedError

    def register(self, *items: Any) -> None:
        raise NotImplementedError

    async def _announce(self, hook: Literal["run_created", "run_cancelled"], row: RunRow) -> None:
        raise NotImplementedError

    def schedule(
        self,
        workflow: Workflow[Any, Any] | str,
        *,
        cron: str,
        timezone: str = "UTC",
        input: Any = None,
        id: str | None = None,
        catch_up: CatchUp = "skip",
        start_at: datetime | None = None,
        until: datetime | None = None,
    ) -> Schedule:
        """Start ``workflow`` at every due time of ``cron`` in ``timezone`` (stored; DST as the zone says).

        Each due time fires exactly once however many engines run. After
        downtime, ``catch_up="skip"`` fires the latest missed time once,
        ``"all"`` fires every missed time. Declaring the same ``id`` again (as an app does at every
        start) keeps its state: when it next fires, whether it is paused, and so the times missed
        while nothing ran; a changed cron or time zone counts from now.
        """
        if isinstance(workflow, Workflow):
            self.register(workflow)
        else:
            workflow = self.get_workflow(workflow)
        check_cron(cron)
        zone(timezone)
        if catch_up not in ("skip", "all"):
            raise InputValidationError("catch_up must be 'skip' or 'all'")
        value = validate_input(workflow.input_codec, input, f"schedule input for workflow '{workflow.id}'")
        begin, end = _moment(start_at, "start_at"), _moment(until, "until")
        if begin is not None and end is not None and end < begin:
            raise InputValidationError("until must not be before start_at")
        now = self.clock.now()
        row = table.ScheduleRow(
            id=id or f"{workflow.id}-{uuid.uuid4().hex[:8]}",
            namespace=self.namespace,
            workflow_id=workflow.id,
            cron=cron,
            timezone=timezone,
            input=workflow.input_codec.dump(value),
            catch_up=catch_up,
            paused=0,
            next_fire_at=first_fire(cron, timezone, now, begin).timestamp(),
            created_at=now.timestamp(),
            start_at=begin,
            until=end,
        )
        stored = self._loop.run(table.upsert(self._store, row))
        self._loop.call_soon(self._worker.wake)
        return _schedule(stored)

    def schedules(self) -> list[Schedule]:
        """This namespace's schedules."""
        return [_schedule(row) for row in self._loop.run(table.listed(self._store, self.namespace))]

    def pause_schedule(self, schedule_id: str) -> None:
        """Stop firing until ``resume_schedule``; due times while paused are skipped."""
        self._set_paused(schedule_id, True)

    def resume_schedule(self, schedule_id: str) -> None:
        """Fire again from the next due time after now."""
        self._set_paused(schedule_id, False)

    def _set_paused(self, schedule_id: str, paused: bool) -> None:
        row = self._find_schedule(schedule_id)
        following = first_fire(row.cron, row.timezone, self.clock.now(), row.start_at).timestamp()
        self._loop.run(table.set_paused(self._store, self.namespace, schedule_id, paused, following))

    def remove_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule; False if there was none."""
        return self._loop.run(table.remove(self._store, self.namespace, schedule_id))

    def trigger_schedule(self, schedule_id: str) -> str:
        """Start the schedule's workflow now, once, outside its cron; returns the run id."""
        row = self._find_schedule(schedule_id)
        now = self.clock.now().timestamp()
        run = self._loop.run(self._fire(row, now, f"schedule:{row.id}:manual:{uuid.uuid4().hex}"))
        return run

    def _find_schedule(self, schedule_id: str) -> table.ScheduleRow:
        for row in self._loop.run(table.listed(self._store, self.namespace)):
            if row.id == schedule_id:
                return row
        raise RunNotFound(f"no schedule {schedule_id!r} in namespace '{self.namespace}'; see engine.schedules()")

    async def _fire(self, row: table.ScheduleRow, now: float, key: str) -> str:
        workflow = self.get_workflow(row.workflow_id)
        new = new_run_row(
            workflow,
            row.input,
            namespace=self.namespace,
            now=now,
            idempotency_key=key,
            metadata=json.dumps({"schedule_id": row.id}),
        )
        created, is_new = await self._store.create_run(new)
        if is_new:
            await self._announce("run_created", created)
        return created.id

    async def _fire_due_schedules(self) -> int:
        """Start a run for every due time of every due schedule this engine knows the workflow of."""
        now = self.clock.now()
        fired = 0
        for row in await table.due(self._store, self.namespace, now.timestamp()):
            try:
                self.get_workflow(row.workflow_id)
            except Exception:  # noqa: BLE001 - another engine of the namespace may have the workflow
                continue
            seen = datetime.fromtimestamp(row.next_fire_at, UTC)
            if row.until is None:
                times = due_times(row.cron, row.timezone, seen, now, row.catch_up)  # type: ignore[arg-type]
            else:  # the window's end: times after it never fire, "skip" keeps the latest one inside it
                times = [
                    due for due in due_times(row.cron, row.timezone, seen, now, "all") if due.timestamp() <= row.until
                ]
                times = times if row.catch_up == "all" else times[-1:]
            for due in times:
                # The idempotency key is the fire record: a second scheduler finds this run already there.
                try:
                    await self._fire(row, now.timestamp(), f"schedule:{row.id}:{int(due.timestamp())}")
                except WorkflowDefinitionError:  # its concurrency_key fails on the input: no run, the clock moves on
                    log.exception("plait schedule %s could not start a run", row.id)
                    continue
                fired += 1
            following = next_fire(row.cron, row.timezone, max(now, times[-1] if times else now))
            await table.advance(self._store, self.namespace, row.id, row.next_fire_at, following.timestamp())
        return fired

    def tick(self, *, max_items: int = 100, budget: timedelta | float = 10.0) -> TickSummary:
        """Do what is due and return: fire due schedules, then run ready runs until done or out of budget.

        For hosts that only run code when invoked (a platform's cron calling
        every minute). Timers and retries are ordinary due runs; runs of dead
        workers become ready once their lease expires.
        """
        return self._loop.run(self._tick(max_items, to_seconds(budget)))

    async def atick(self, *, max_items: int = 100, budget: timedelta | float = 10.0) -> TickSummary:
        return await self._loop.run_async(self._tick(max_items, to_seconds(budget)))

    async def _tick(self, max_items: int, budget: float) -> TickSummary:
        fired = await self._fire_due_schedules()
        processed, more = await self._worker.process_ready(max_items, budget)
        return TickSummary(schedules_fired=fired, runs_processed=processed, more_ready=more)
