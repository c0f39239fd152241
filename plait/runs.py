"""What users get back about runs: statuses, snapshots, step records and handles."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from pydantic import BaseModel, Field, ValidationError

from plait.artifacts.model import Artifact
from plait.errors import RunCancelled, RunFailed, StepOutputInvalid
from plait.payloads import UNREADABLE_KEY, read_json, type_name, validation_summary
from plait.planning.marks import recipe_of
from plait.store.base import EventRow, RunRow, StepRow
from plait.usage.models import Usage, nanos_to_cost

if TYPE_CHECKING:
    from plait.engine import Engine

O_co = TypeVar("O_co", covariant=True)
T = TypeVar("T")


class RunStatus(StrEnum):
    """Where a run is in its life; the last three are final."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    SUSPENDED = "suspended"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _json(text: str | None) -> Any:
    # Never raises: a stored value that cannot be decoded shows as a marker, so one row cannot break a listing.
    return read_json(text)


def _object(text: str | None) -> dict[str, Any] | None:
    value = read_json(text)
    if value is None or isinstance(value, dict):
        return value
    return {UNREADABLE_KEY: f"stored value should be a JSON object, got {type(value).__name__}"}


class StepRecord(BaseModel):
    """One attempt of one step. ``key`` tells foreach items and loop iterations apart."""

    step_id: str
    key: str
    status: str
    attempt: int
    input: Any
    output: Any
    error: dict[str, Any] | None
    started_at: datetime
    finished_at: datetime
    usage: Usage = Field(default_factory=Usage)
    """The model calls this attempt recorded (ctx.record_usage)."""

    @classmethod
    def from_row(cls, row: StepRow) -> StepRecord:
        return cls(
            step_id=row.step_id,
            key=row.step_key,
            status=row.status,
            attempt=row.attempt,
            input=_json(row.input),
            output=_json(row.output) if row.status == "succeeded" else None,
            error=_object(row.error),
            started_at=datetime.fromtimestamp(row.started_at, UTC),
            finished_at=datetime.fromtimestamp(row.finished_at, UTC),
        )


class Run(BaseModel):
    """A snapshot of a run as stored (payloads as plain JSON).

    ``wait`` says what a waiting or suspended run waits for: its kind
    ("sleep", "event", "approval", "poll", "child", "suspended"), the step, and
    the deadline, event name or suspension payload. ``cancel_reason`` is the
    reason given to ``cancel`` (None when none was given).
    """

    id: str
    workflow_id: str
    workflow_version: str
    status: RunStatus
    input: Any
    output: Any
    error: dict[str, Any] | None
    idempotency_key: str | None
    priority: int
    metadata: dict[str, Any] | None
    parent_run_id: str | None
    status_message: str | None
    wait: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    usage: Usage = Field(default_factory=Usage)
    """Committed model usage (``by_model`` is filled by ``info()``, empty in listings)."""
    cancel_reason: str | None = None
    config: dict[str, Any] | None = None
    """The step settings the run was started with, by step id (only the fields given)."""
    recipe: str | None = None
    variant: str | None = None

    @classmethod
    def from_row(cls, row: RunRow) -> Run:
        mark = recipe_of(row.metadata)  # a run started from a plan names its recipe and variant
        return cls(
            recipe=mark.get("id") if mark else None,
            variant=mark.get("variant") if mark else None,
            id=row.id,
            workflow_id=row.workflow_id,
            workflow_version=row.workflow_version,
            status=RunStatus(row.status),
            input=_json(row.input),
            output=_json(row.output),
            error=_object(row.error),
            idempotency_key=row.idempotency_key,
            priority=row.priority,
            metadata=_object(row.metadata),
            parent_run_id=row.parent_run_id,
            status_message=row.status_message,
            wait=_object(row.wait_info),
            created_at=datetime.fromtimestamp(row.created_at, UTC),
            started_at=_time(row.started_at),
            finished_at=_time(row.finished_at),
            usage=Usage(
                input_tokens=row.usage_input_tokens,
                output_tokens=row.usage_output_tokens,
                cost=nanos_to_cost(row.usage_cost_nanos),
                calls=row.usage_calls,
            ),
            cancel_reason=row.cancel_reason,
            config=_json(row.config),
        )


class Event(BaseModel):
    """One entry of a run's event log. ``seq`` numbers a run's events without gaps; ``id`` is global."""

    id: int
    run_id: str
    workflow_id: str
    seq: int
    type: str
    step_id: str | None
    step_key: str | None
    attempt: int | None
    payload: Any
    created_at: datetime

    @classmethod
    def from_row(cls, row: EventRow) -> Event:
        return cls(
            id=row.id,
            run_id=row.run_id,
            workflow_id=row.workflow_id,
            seq=row.seq,
            type=row.type,
            step_id=row.step_id,
            step_key=row.step_key,
            attempt=row.attempt,
            payload=_json(row.payload),
            created_at=datetime.fromtimestamp(row.created_at, UTC),
        )


class EventPage(BaseModel):
    """Events of the global feed, and the cursor to pass back for the ones after them."""

    items: list[Event]
    cursor: str | None


class Page(BaseModel, Generic[T]):
    """One page of a listing; pass ``next_cursor`` back to get the next (None at the end)."""

    items: list[T]
    next_cursor: str | None


def outcome(row: RunRow, output_codec: Any) -> Any:
    """The typed result of a final run, or the matching exception."""
    if row.status == "succeeded":
        if output_codec is None:
            return _json(row.output)
        try:
            return output_codec.load(row.output or "null")
        except ValidationError as exc:
            raise StepOutputInvalid(
                f"run {row.id} succeeded but its stored result cannot be read back as "
                f"{type_name(output_codec.type)}: {validation_summary(exc)}; read it raw with run.info()"
            ) from exc
    if row.status == "cancelled":
        why = f": {row.cancel_reason}" if row.cancel_reason else ""
        raise RunCancelled(f"run {row.id} was cancelled{why}", run_id=row.id)
    error = _object(row.error) or {}
    where = f" at step '{error['step_id']}'" if error.get("step_id") else ""
    raise RunFailed(
        f"run {row.id} of workflow '{row.workflow_id}' failed{where}: {error.get('message', 'unknown error')}. "
        f"Fix the cause and call engine.retry({row.id!r}) to continue from the failed step",
        run_id=row.id,
        error=error,
    )


class RunHandle(Generic[O_co]):
    """A reference to a run; every method reads the store, so it is always current."""

    def __init__(self, engine: Engine, run_id: str, *, created: RunRow | None = None) -> None:
        self._engine = engine
        self.id = run_id
        # The row as ``astart`` created or found it: the HTTP API answers a start with it, without a
        # second trip to the engine's loop (which a step that never awaits may hold).
        self._created = created

    def __repr__(self) -> str:
        return f"RunHandle({self.id!r})"

    def _sync(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._engine._loop.run(coro)

    async def _async(self, coro: Coroutine[Any, Any, T]) -> T:
        return await self._engine._loop.run_async(coro)

    @property
    def status(self) -> RunStatus:
        """The run's current status."""
        return self.info().status

    def info(self) -> Run:
        """A snapshot of the run."""
        return self._sync(self._engine._get_run_info(self.id))

    async def ainfo(self) -> Run:
        return await self._async(self._engine._get_run_info(self.id))

    async def _ainfo_as_started(self) -> Run:
        """The run as ``astart`` created or found it (what a start over HTTP answers), else ``ainfo()``."""
        if self._created is not None and not self._created.usage_calls:  # no usage to split per model
            return Run.from_row(self._created)
        return await self.ainfo()

    def result(self, timeout: float | None = None) -> O_co:
        """Wait for the run to end and return its typed output.

        Raises RunFailed or RunCancelled, and ResultTimeout (a TimeoutError) after ``timeout`` seconds.
        """
        started = time.monotonic()
        ended, result = self._engine._wait_for_end(self.id, timeout)
        if not ended:  # not executing here, or its execution ended without a final row: ask the store
            left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
            result = self._sync(self._engine._result(self.id, left))
        return cast(O_co, result)

    async def aresult(self, timeout: float | None = None) -> O_co:
        result: O_co = await self._async(self._engine._result(self.id, timeout))
        return result

    def steps(self) -> list[StepRecord]:
        """Every step attempt so far, in the order they finished."""
        return self._sync(self._engine._steps(self.id))

    async def asteps(self) -> list[StepRecord]:
        return await self._async(self._engine._steps(self.id))

    def send_event(self, name: str, payload: Any = None, *, event_id: str | None = None) -> bool:
        """Deliver event ``name`` to this run (see ``Engine.send_event``)."""
        return self._engine.send_event(self.id, name, payload, event_id=event_id)

    async def asend_event(self, name: str, payload: Any = None, *, event_id: str | None = None) -> bool:
        return await self._engine.asend_event(self.id, name, payload, event_id=event_id)

    def approve(self, step_id: str, data: Any = None) -> bool:
        """Approve this run's approval step ``step_id``."""
        return self._engine.approve(self.id, step_id, data)

    async def aapprove(self, step_id: str, data: Any = None) -> bool:
        return await self._engine.aapprove(self.id, step_id, data)

    def reject(self, step_id: str, reason: str = "") -> bool:
        """Reject this run's approval step ``step_id``."""
        return self._engine.reject(self.id, step_id, reason)

    async def areject(self, step_id: str, reason: str = "") -> bool:
        return await self._engine.areject(self.id, step_id, reason)

    def resume(self, step_id: str, payload: Any = None) -> None:
        """Continue this run, suspended in ``step_id``, with ``payload`` (the step sees it as ``ctx.resume_data``)."""
        self._engine.resume(self.id, step_id, payload)

    async def aresume(self, step_id: str, payload: Any = None) -> None:
        await self._engine.aresume(self.id, step_id, payload)

    def events(self, after: int = 0, *, follow: bool = True, poll: float = 0.05) -> Iterator[Event]:
        """The run's events after seq ``after``: its history, then new ones live until the run ends.

        With ``follow=False`` it stops at the end of the history so far.
        """
        while True:
            batch = self._sync(self._engine._store.read_run_events(self._engine.namespace, self.id, after, 500))
            yield from batch_events(batch)
            if batch:
                after = batch[-1].seq
                continue
            if not follow or self._sync(self._engine._get_row(self.id)).is_terminal:
                # Read once more: the final events commit with the final status.
                tail = self._sync(self._engine._store.read_run_events(self._engine.namespace, self.id, after, 500))
                yield from batch_events(tail)
                if not tail:
                    return
                after = tail[-1].seq
                continue
            time.sleep(poll)  # following another thread's or process's progress

    async def aevents(self, after: int = 0, *, follow: bool = True, poll: float = 0.05) -> AsyncIterator[Event]:
        """Async twin of ``events``."""
        while True:
            batch = await self._async(self._engine._store.read_run_events(self._engine.namespace, self.id, after, 500))
            for event in batch_events(batch):
                yield event
            if batch:
                after = batch[-1].seq
                continue
            if not follow or (await self._async(self._engine._get_row(self.id))).is_terminal:
                tail = await self._async(
                    self._engine._store.read_run_events(self._engine.namespace, self.id, after, 500)
                )
                for event in batch_events(tail):
                    yield event
                if not tail:
                    return
                after = tail[-1].seq
                continue
            await asyncio.sleep(poll)

    def artifacts(self) -> list[Artifact]:
        """The artifacts steps of this run kept (key, size, content_type, step_id, created_at)."""
        return self._sync(self._engine._artifacts_of(self.id))

    async def aartifacts(self) -> list[Artifact]:
        return await self._async(self._engine._artifacts_of(self.id))

    def artifact(self, key: str) -> Any:
        """Artifact ``key`` as it was put: bytes, str, or JSON (a model comes back as its dict)."""
        return self._sync(self._engine._artifact(self.id, key))

    async def aartifact(self, key: str) -> Any:
        return await self._async(self._engine._artifact(self.id, key))

    def cancel(self, *, reason: str | None = None) -> bool:
        """Cancel the run (and its child runs); False if it had already ended. ``reason`` is stored with it."""
        return self._sync(self._engine._cancel(self.id, reason))

    async def acancel(self, *, reason: str | None = None) -> bool:
        return await self._async(self._engine._cancel(self.id, reason))


def batch_events(rows: list[EventRow]) -> list[Event]:
    return [Event.from_row(row) for row in rows]
