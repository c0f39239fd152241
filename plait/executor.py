"""Runs one run's plan node by node, checkpointing every step through the store.

Replaying a run is structural: every step has a stable key in its run
("fetch", "enrich[3]" for a foreach item, "refine#2" for a loop iteration),
and a key that already has a resolving row is read back instead of run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any, NoReturn, Protocol

from pydantic import ValidationError

from plait.artifacts.storage import ArtifactStorage
from plait.clock import Clock, wall_seconds
from plait.context import Context
from plait.errors import (
    BudgetExceeded,
    EventTimeout,
    InputValidationError,
    RunCancelledSignal,
    StepFailed,
    StepOutputInvalid,
    StepTimeout,
    WorkflowTimeout,
)
from plait.failures import describe_error, exception_text
from plait.hooks import HookInfo, HookRunner, Observer
from plait.payloads import UNSTORABLE, Codec, dump_any, jsonable, type_name, validation_summary
from plait.planning.marks import planned_skips
from plait.run_log import RunLog, public_error
from plait.step_config import StepConfigs
from plait.steps import Step, UserCodeExit, takes_context
from plait.store.base import FOREVER, ArtifactRow, Lease, NewEvent, NewUsage, Park, RunRow, StepRow, Store, WaitRow
from plait.tracing import Tracer
from plait.usage.recorder import UsageRecorder
from plait.waiting import Poll, SkipRequest, SuspendRequest, approval_event, resume_event
from plait.workflow.graph import (
    BranchNode,
    ChildTask,
    ForeachNode,
    LoopNode,
    MapNode,
    Node,
    ParallelNode,
    SleepNode,
    Task,
    ThenNode,
    WaitNode,
    Workflow,
)


class RunHost(Protocol):
    """What an execution needs from the worker that runs it."""

    store: Store
    clock: Clock
    max_payload_bytes: int
    draining: bool
    observers: list[Observer]
    tracer: Tracer | None
    store_prompts: bool
    artifacts: ArtifactStorage

    def lease_until(self) -> float:
        """When a lease (or a queue slot) taken now expires, in wall seconds."""
        ...

    async def run_child(
        self, parent: RunRow, step_key: str, child_run_id: str, workflow: Workflow[Any, Any], input_json: str
    ) -> RunRow:
        """Create (or find) the child run, see it to its end, and return its final row."""
        ...

    async def start_child(self, parent: RunRow, step_key: str, workflow: Any, input: Any, key: str | None) -> Any:
        """Start (or find, by an idempotency key made of run, step key and ``key``) a child run; its handle."""
        ...


# A retry back-off at least this long (seconds) parks the run instead of holding it in memory.
PARK_RETRIES_LONGER_THAN = 2.0
# Steps that never await (plait commits without yielding) would hold the loop for a whole run:
# between steps, a run that held it this long lets everything else (heartbeats, starts, reads) in.
HOLD_LOOP_SECONDS = 0.05


class ParkSignal(BaseException):
    """Internal: the run must wait; unwinds the execution so the worker can park it.

    A BaseException so that a step's ``except Exception`` cannot swallow it.
    """

    def __init__(self, park: Park) -> None:
        super().__init__(park.status)
        self.park = park


class StepFailure(Exception):
    """Internal: a step failed for good; carries the stored error to fail the run with."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", ""))
        self.error = error


def is_engine_signal(exc: BaseException) -> bool:
    """Whether ``exc`` is plait's own control flow, never a failure of user code.

    Everything else a step, predicate or function raises, ``SystemExit``,
    ``KeyboardInterrupt`` and ``GeneratorExit`` included, is that step's failure.
    """
    return isinstance(exc, asyncio.CancelledError | RunCancelledSignal | ParkSignal | SuspendRequest | StepFailure)


def call_with_optional_context(fn: Callable[..., Any], takes_context: bool, ctx: Context, value: Any) -> Any:
    return fn(ctx, value) if takes_context else fn(value)


class RunExecution:
    """The in-memory progress of one run held by this worker."""

    def __init__(
        self,
        host: RunHost,
        run: RunRow,
        workflow: Workflow[Any, Any],
        steps: list[StepRow],
        waits: list[WaitRow] | None = None,
        state: dict[str, Any] | None = None,
        attempts: dict[str, int] | None = None,
    ) -> None:
        self.host = host
        self.state: dict[str, Any] = state or {}
        self.log_enabled = host.store.record_events
        self.waits = {wait.step_key: wait for wait in waits or []}
        self.run = run
        self.workflow = workflow
        self.lease = Lease(run.id, run.lease_token, run.namespace)
        self.run_id = run.id
        self.workflow_input: Any = workflow.input_codec.load(run.input)
        self.outputs_by_step: dict[str, str] = {}
        self.planned_skips = planned_skips(run.metadata)  # steps the run's plan skips (plait.Plan)
        self.cancelled = False
        # The workflow's timeout counts from the run's creation, or from its last engine.retry.
        self.deadline = None if workflow.timeout is None else (run.retried_at or run.created_at) + workflow.timeout
        self.loop = asyncio.get_running_loop()  # a sync step's thread reads artifacts through it
        self.hand_back_after: float | None = None  # loop time: engine.execute's budget ends then
        self._yield_at = self.loop.time() + HOLD_LOOP_SECONDS
        self._resolved: dict[str, StepRow] = {}
        self._failed_attempts: dict[str, int] = {}
        self._contexts: set[Context] = set()
        retried_at = run.retried_at or 0.0
        for row in steps:
            if row.output is not None:
                self._resolved[row.step_key] = row
                self.outputs_by_step[row.step_id] = row.output
            elif row.status == "failed" and row.finished_at >= retried_at:
                self._failed_attempts[row.step_key] = self._failed_attempts.get(row.step_key, 0) + 1
        self._attempts_seen = dict(attempts or {})  # attempts the event log shows, committed or cut short
        for row in steps:
            self._attempts_seen[row.step_key] = max(self._attempts_seen.get(row.step_key, 0), row.attempt)
        last = workflow.nodes[-1]
        # The last step's row is written in the run's final transaction: one commit fewer per run.
        self._deferrable_key = last.task.id if isinstance(last, ThenNode) and isinstance(last.task, Step) else None
        self.deferred_step: StepRow | None = None
        self.deferred_events: list[NewEvent] = []
        self.log = RunLog(run, host.store, host.clock, self.lease)
        workflow_hooks = [HookRunner([workflow.hooks])] if workflow.hooks is not None else []
        tracer = host.tracer if host.tracer is not None and host.tracer.is_recording() else None
        self.tracer = tracer
        self.observers: list[Observer] = [*host.observers, *workflow_hooks, *([tracer] if tracer else [])]
        self.usage = UsageRecorder(run, workflow.budget, host.store_prompts, tracer)
        self.deferred_usage: list[NewUsage] = []
        self._last_output: tuple[Any, str, Any] | None = None
        self.output_json: str | None = None  # the stored result, once ``execute`` succeeded
        # ctx.artifacts.put of each step attempt in flight, by step key: committed with its result.
        self.pending_artifacts: dict[str, dict[str, ArtifactRow]] = {}
        self.configs = StepConfigs(workflow, run.config)

    def mark_cancelled(self) -> None:
        self.cancelled = True
        for ctx in self._contexts:
            ctx.mark_cancelled()

    async def execute(self) -> tuple[str, Any, dict[str, Any] | None]:
        """Run to the end: ("succeeded", output, None) or ("failed", None, error).

        Raises RunCancelledSignal or LeaseLost when the run is no longer ours.
        With a workflow timeout, the run fails with WorkflowTimeout once its
        deadline passes, even in the middle of a step (which is cancelled).
        """
        if self.deadline is None:
            return await self._execute_nodes()
        remaining = self.deadline - self._now()
        if remaining <= 0:
            return "failed", None, self._timeout_error()
        body = asyncio.ensure_future(self._execute_nodes())
        timer = asyncio.ensure_future(self.host.clock.sleep(remaining))
        try:
            await asyncio.wait({body, timer}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # this run's own task was cancelled (a cancel, a shutdown)
            body.cancel()
            timer.cancel()
            await asyncio.gather(body, timer, return_exceptions=True)
            raise
        timer.cancel()
        if body.done():
            return body.result()
        self.mark_cancelled()
        body.cancel()
        await asyncio.gather(body, return_exceptions=True)
        await self._flush_deferred()
        return "failed", None, self._timeout_error()

    def _timeout_error(self) -> dict[str, Any]:
        assert self.deadline is not None and self.workflow.timeout is not None
        return describe_error(
            WorkflowTimeout(
                f"run {self.run_id} of workflow '{self.workflow.id}' went past its timeout of "
                f"{self.workflow.timeout:g}s (waiting included); give plait.workflow(timeout=...) more time, or "
                f"retry it (plait runs retry {self.run_id}), which starts a new deadline"
            )
        )

    async def _execute_nodes(self) -> tuple[str, Any, dict[str, Any] | None]:
        value = self.workflow_input
        try:
            for node in self.workflow.nodes:
                value = await self._run_node(node, value)
            output = self.workflow.output_codec.validate(value)
            last = self._last_output
            if last is not None and last[0] is output and last[2] is self.workflow.output_codec.type:
                self.output_json = last[1]  # the last step's output, already stored as JSON
            else:
                self.output_json = self._dump(self.workflow.output_codec, output, None)
        except StepFailure as failure:
            await self._flush_deferred()
            return "failed", None, failure.error
        except ValidationError as exc:
            await self._flush_deferred()
            error = describe_error(
                StepOutputInvalid(
                    f"run {self.run_id}: the workflow's result does not match its output type "
                    f"{self.workflow.output_codec.type!r}: {validation_summary(exc)}"
                )
            )
            return "failed", None, error
        except StepOutputInvalid as exc:
            await self._flush_deferred()
            return "failed", None, describe_error(exc)
        return "succeeded", output, None

    async def _flush_deferred(self) -> None:
        if self.deferred_step is not None:
            row, self.deferred_step = self.deferred_step, None
            events, self.deferred_events = self.deferred_events, []
            usage, self.deferred_usage = self.deferred_usage, []
            await self.host.store.record_step(self.lease, row, events, usage)

    # -- nodes ---------------------------------------------------------------

    async def _run_node(self, node: Node, value: Any) -> Any:
        if isinstance(node, ThenNode):
            return await self._run_task(node.task, node.task.id, value)
        if isinstance(node, ParallelNode):
            # Each branch gets its own copy, made before any runs: a branch that mutates its input
            # must not change what a sibling (or ctx.workflow_input) sees, as a replay from JSON would not.
            inputs = [copy.deepcopy(value) for _ in node.tasks]
            results = await self._gather([self._run_task(t, t.id, v) for t, v in zip(node.tasks, inputs, strict=True)])
            return tuple(results)
        if isinstance(node, BranchNode):
            return await self._run_branch(node, value)
        if isinstance(node, MapNode):
            return await self._run_map(node, value)
        if isinstance(node, ForeachNode):
            return await self._run_foreach(node, value)
        if isinstance(node, SleepNode):
            return await self._run_sleep(node, value)
        if isinstance(node, WaitNode):
            return await self._run_wait(node)
        return await self._run_loop(node, value)

    async def _gather(self, coros: list[Awaitable[Any]]) -> list[Any]:
        """Run concurrently; the first failure cancels the siblings (their finished steps stay committed).

        When some branches must wait, the others run on until they finish or
        wait too; then the run parks until the earliest of their wake-ups.
        """
        tasks = [asyncio.ensure_future(c) for c in coros]
        try:
            pending: set[asyncio.Future[Any]] = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    error = task.exception()
                    if error is not None and not isinstance(error, ParkSignal):
                        raise error
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        parks = [e.park for t in tasks if isinstance(e := t.exception(), ParkSignal)]
        if parks:
            raise ParkSignal(min(parks, key=lambda park: park.ready_at))
        return [task.result() for task in tasks]

    def _predicate_holds(self, predicate: Callable[..., Any], value: Any, step_id: str) -> bool:
        """The predicate's verdict; one that raises fails the run at ``step_id``."""
        ctx = Context(self, step_id, step_id, 1)
        with self._user_code(step_id, "its predicate"):
            return bool(call_with_optional_context(predicate, takes_context(predicate), ctx, value))

    @contextlib.contextmanager
    def _user_code(self, step_id: str, what: str) -> Iterator[None]:
        """Turn anything user code raises (not plait's signals) into a stored failure of the run at ``step_id``."""
        try:
            yield
        except BaseException as exc:
            if is_engine_signal(exc):
                raise
            failure = StepFailed(
                f"'{step_id}' in run {self.run_id}: {what} raised {type(exc).__name__}: {exception_text(exc)}",
                step_id=step_id,
            )
            error = describe_error(failure, step_id, 1)
            error["traceback"] = describe_error(exc)["traceback"]
            raise StepFailure(error) from exc

    async def _run_branch(self, node: BranchNode, value: Any) -> Any:
        options = [task for _, task in node.cases] + ([node.default] if node.default else [])
        for task in options:
            if task.id in self._resolved:  # the branch chosen before a restart
                return await self._run_task(task, task.id, value)
        for predicate, task in node.cases:
            if self._predicate_holds(predicate, value, node.id):
                return await self._run_task(task, task.id, value)
        if node.default is not None:
            return await self._run_task(node.default, node.default.id, value)
        raise StepFailure(
            describe_error(
                StepFailed(
                    f"branch '{node.id}' in run {self.run_id}: no predicate matched and there is no default; "
                    "add default=step to the branch",
                    step_id=node.id,
                ),
                node.id,
            )
        )

    async def _run_map(self, node: MapNode, value: Any) -> Any:
        if node.id in self._resolved:
            return node.output_codec.load(self._resolved[node.id].output or "null")
        started = self.host.clock.now().timestamp()
        ctx = Context(self, node.id, node.id, 1)
        try:
            result = call_with_optional_context(node.fn, node.takes_context, ctx, value)
            if inspect.isawaitable(result):
                result = await result
            output = node.output_codec.validate(result)
            output_json = self._dump(node.output_codec, output, node.id)
        except BaseException as exc:
            if is_engine_signal(exc):
                raise
            error = describe_error(exc, node.id, 1)
            await self._record(node.id, node.id, None, "failed", None, None, json.dumps(error), started)
            raise StepFailure(error) from exc
        await self._record(node.id, node.id, None, "succeeded", None, output_json, None, started)
        self.outputs_by_step[node.id] = output_json
        return output

    async def _run_foreach(self, node: ForeachNode, value: Any) -> list[Any]:
        if not isinstance(value, list | tuple):
            raise StepFailure(
                describe_error(
                    StepFailed(
                        f"foreach '{node.id}' in run {self.run_id} needs a list, got {type(value).__name__}",
                        step_id=node.id,
                    ),
                    node.id,
                )
            )
        limit = asyncio.Semaphore(node.concurrency)

        async def one(index: int, item: Any) -> Any:
            async with limit:
                return await self._run_task(node.task, f"{node.task.id}[{index}]", item)

        return await self._gather([one(i, item) for i, item in enumerate(value)])

    async def _run_loop(self, node: LoopNode, value: Any) -> Any:
        """Iterate, checkpointing each decision so a replay takes the live run's path.

        A decision to go on is recorded by the next iteration's own traces (a step
        row, a wait, a child run); a decision to stop by a row at the loop's id.
        Only a decision with no durable consequence yet is (re)made by the predicate.
        """
        ended = self._resolved.get(node.id)
        last = int(json.loads(ended.input or "{}").get("iterations", 0)) if ended is not None else None
        for iteration in range(1, node.max_iterations + 1):
            key = f"{node.task.id}#{iteration}"
            value = await self._run_task(node.task, key, value)
            if last is not None:
                if iteration >= last:
                    return value
                continue
            if await self._went_on(node.task, f"{node.task.id}#{iteration + 1}"):
                continue
            holds = self._predicate_holds(node.predicate, value, node.id)
            if holds == node.until:  # dountil stops when it holds; dowhile when it stops holding
                await self._record_loop_end(node, key, iteration)
                return value
        raise StepFailure(
            describe_error(
                StepFailed(
                    f"loop '{node.id}' in run {self.run_id} reached max_iterations={node.max_iterations}; "
                    "raise max_iterations or check the loop predicate",
                    step_id=node.id,
                ),
                node.id,
            )
        )

    async def _went_on(self, task: Task, next_key: str) -> bool:
        """Whether the iteration at ``next_key`` left a trace, so the loop already decided to go on."""
        if next_key in self._attempts_seen or next_key in self.waits or next_key in self._resolved:
            return True
        if isinstance(task, ChildTask):  # a child run is created before its parent parks on it
            return await self.host.store.get_run(self.run.namespace, f"{self.run_id}.{next_key}") is not None
        return False

    async def _record_loop_end(self, node: LoopNode, key: str, iteration: int) -> None:
        """Checkpoint the decision to stop: the loop's id resolves to its final value."""
        now = self._now()
        output = self._resolved[key].output if key in self._resolved else None
        iterations = json.dumps({"iterations": iteration})
        last = node is self.workflow.nodes[-1] and self.deferred_step is None  # then it rides the run's last commit
        await self._record(node.id, node.id, None, "succeeded", iterations, output or "null", None, now, defer=last)

    # -- waiting -------------------------------------------------------------

    def _now(self) -> float:
        return self.host.clock.now().timestamp()

    def _park(self, status: str, ready_at: float, wait: WaitRow | None, info: dict[str, Any], **extra: Any) -> NoReturn:
        if self.deadline is not None and ready_at > self.deadline:
            # Claimed again at the deadline whatever it waits for, so the timeout fires while it is parked.
            ready_at = self.deadline
        raise ParkSignal(Park(status, ready_at, wait, json.dumps(info, default=str), **extra))

    async def _run_sleep(self, node: SleepNode, value: Any) -> Any:
        now = self._now()
        wait = self.waits.get(node.id)
        if wait is None:
            if node.seconds is not None:
                wake_at = now + node.seconds
            elif node.until is not None:
                wake_at = node.until.timestamp()
            else:
                assert node.until_fn is not None
                ctx = Context(self, node.id, node.id, 1)
                with self._user_code(node.id, "its sleep_until function"):
                    when = call_with_optional_context(node.until_fn, takes_context(node.until_fn), ctx, value)
                    if not isinstance(when, datetime):
                        raise TypeError(f"it must return a datetime, got {type(when).__name__}")
                    wake_at = when.timestamp()
            if wake_at <= now:
                return value
            wait = WaitRow(self.run_id, node.id, "sleep", wake_at, None, None, None, now)
        if wait.wake_at is not None and wait.wake_at > now:
            self._park("waiting", wait.wake_at, wait, {"kind": "sleep", "step_id": node.id, "wake_at": wait.wake_at})
        return value

    async def _run_wait(self, node: WaitNode) -> Any:
        if node.id in self._resolved:
            return self._event_value(node, self._resolved[node.id].output or "null")
        payload = await self._take_event(node.event, node.id, node.id)
        if payload is not None:
            return self._event_value(node, payload)
        now = self._now()
        wait = self.waits.get(node.id) or WaitRow(
            self.run_id, node.id, "event", None, None if node.timeout is None else now + node.timeout, node.event,
            None, now,
        )  # fmt: skip
        if wait.deadline is not None and now >= wait.deadline:
            if node.has_default:
                output = node.codec.dump(node.default) if node.default is not None else "null"
                await self._record(node.id, node.id, None, "succeeded", None, output, None, now)
                return node.default
            message = (
                f"run {self.run_id} waited for event '{node.event}' at '{node.id}' until its timeout "
                f"({node.timeout:g}s) and none came; send it sooner, or give wait_for_event a default="
            )
            raise StepFailure(describe_error(EventTimeout(message), node.id, 1))
        info = {"kind": "event", "step_id": node.id, "event": node.event, "deadline": wait.deadline}
        self._park("waiting", wait.deadline or FOREVER, wait, info, wake_on=node.event)

    def _event_value(self, node: WaitNode, payload: str) -> Any:
        """The payload as this wait's schema: each wait checks its own, even when waits share an event name."""
        try:
            return node.codec.load(payload)
        except ValidationError as exc:  # two senders raced past send_event's check of the next wait
            fields = ", ".join(".".join(str(p) for p in e["loc"]) or "(value)" for e in exc.errors())
            error = InputValidationError(
                f"run {self.run_id}: event '{node.event}' taken at '{node.id}' does not match its schema "
                f"{type_name(node.codec.type)} (fields: {fields}); send events in the order the waits "
                "come, each with its own wait's schema"
            )
            raise StepFailure(describe_error(error, node.id, 1)) from exc

    async def _take_event(self, name: str, key: str, step_id: str) -> str | None:
        """Consume the oldest waiting event ``name`` and checkpoint it as the output at ``key``."""
        now = self._now()
        record = StepRow(self.run_id, key, step_id, 1, "succeeded", None, None, None, now, now)
        async with self.log.writing():
            events = self.log.step_events(key, step_id, 1, now, "step.completed", {"event": name})
            payload = await self.host.store.consume_event(self.lease, name, key, record, events)
        if payload is not None:
            self._resolved[key] = replace(record, output=payload)
            self.outputs_by_step[step_id] = payload
        return payload

    async def _run_approval(self, step: Step[Any, Any], key: str) -> Any:
        payload = await self._take_event(approval_event(step.id), key, step.id)
        if payload is not None:
            return step.output_codec.load(payload)
        now = self._now()
        timeout = step.options.timeout
        wait = self.waits.get(key) or WaitRow(
            self.run_id, key, "event", None, None if timeout is None else now + timeout, approval_event(step.id),
            None, now,
        )  # fmt: skip
        if wait.deadline is not None and now >= wait.deadline:
            message = f"approval '{step.id}' in run {self.run_id} got no decision within {timeout:g}s"
            raise StepFailure(describe_error(EventTimeout(message), step.id, 1))
        info = {"kind": "approval", "step_id": step.id, "deadline": wait.deadline}
        self._park("waiting", wait.deadline or FOREVER, wait, info, wake_on=approval_event(step.id))

    # -- tasks ---------------------------------------------------------------

    def _check_budget(self, step_id: str) -> None:
        """Start no step once the run's committed usage reached its budget: fail, or park until it is raised."""
        reason = self.usage.exceeded()
        if reason is None:
            return
        budget = self.usage.budget
        assert budget is not None
        if budget.on_exceed == "suspend":
            info = {
                "kind": "budget",
                "step_id": step_id,
                "reason": reason,
                "budget": budget.model_dump(),
                "usage": self.usage.summary().model_dump(exclude={"by_model"}),
            }
            self._park("suspended", FOREVER, None, info)
        message = (
            f"run {self.run_id} stopped before step '{step_id}': its recorded usage ({reason}) reached its budget; "
            f"raise it with engine.raise_budget({self.run_id!r}, ...) and call engine.retry({self.run_id!r})"
        )
        raise StepFailure(describe_error(BudgetExceeded(message), step_id))

    async def _run_task(self, task: Task, key: str, value: Any) -> Any:
        if key in self._resolved:
            return _replay(task, self._resolved[key])
        if self.loop.time() >= self._yield_at:
            await asyncio.sleep(0)
            self._yield_at = self.loop.time() + HOLD_LOOP_SECONDS
        if self.host.draining or (self.hand_back_after is not None and self.loop.time() >= self.hand_back_after):
            # Shutting down, or execute()'s budget is spent: hand the run back at this step boundary.
            self._park("pending", self._now(), None, {"kind": "handed_back", "step_id": task.id})
        if self.usage.budget is not None:
            self._check_budget(task.id)
        if isinstance(task, ChildTask):
            return await self._run_child(task, key, value)
        return await self._run_step(task, key, value)

    async def _run_child(self, task: ChildTask[Any, Any], key: str, value: Any) -> Any:
        workflow = task.workflow
        started = self.host.clock.now().timestamp()
        try:
            child_input = workflow.input_codec.validate(value)
            input_json = workflow.input_codec.dump(child_input)
        except (ValidationError, InputValidationError) as exc:
            reason = validation_summary(exc) if isinstance(exc, ValidationError) else exc.message
            error = describe_error(
                StepFailed(f"child workflow '{task.id}' rejected its input: {reason}", step_id=task.id), task.id, 1
            )
            await self._record(key, task.id, None, "failed", None, None, json.dumps(error), started)
            raise StepFailure(error) from exc
        child = await self.host.run_child(self.run, key, f"{self.run_id}.{key}", workflow, input_json)
        if not child.is_terminal:  # it waits or runs elsewhere: its end wakes this run
            info = {"kind": "child", "step_id": task.id, "child_run_id": child.id}
            self._park("waiting", FOREVER, None, info, wake_if_done=child.id)
        if child.status == "succeeded":
            output = workflow.output_codec.load(child.output or "null")
            await self._record(key, task.id, None, "succeeded", input_json, child.output, None, started)
            self.outputs_by_step[task.id] = child.output or "null"
            return output
        error = {
            "code": "step.failed",
            "message": f"child run {child.id} of workflow '{workflow.id}' ended {child.status}",
            "step_id": task.id,
            "child_run_id": child.id,
            "child_error": json.loads(child.error) if child.error else None,
        }
        await self._record(key, task.id, None, "failed", input_json, None, json.dumps(error), started)
        raise StepFailure(error)

    async def _run_step(self, step: Step[Any, Any], key: str, value: Any) -> Any:
        if step.id in self.planned_skips:  # the plan skips it: recorded skipped, its input handed on
            passthrough, attempt = dump_any(value), self._next_attempt(key)
            started = self.host.clock.now().timestamp()
            await self._record(key, step.id, attempt, "skipped", passthrough, passthrough, None, started)
            return value
        if step.approval_codec is not None:
            return await self._run_approval(step, key)
        options = step.options
        budget_used = self._failed_attempts.get(key, 0)
        attempt = self._next_attempt(key)
        started = self.host.clock.now().timestamp()
        backoff = self.waits.get(key)
        if backoff is not None and backoff.kind == "retry" and backoff.wake_at and backoff.wake_at > started:
            info = {"kind": "retry", "step_id": step.id, "attempt": attempt, "wake_at": backoff.wake_at}
            self._park("waiting", backoff.wake_at, backoff, info)  # woken early: the back-off is not over
        try:
            input_value = step.input_codec.validate(value)
            input_json = self._input_json(step, input_value)
        except ValidationError as exc:  # the previous step's output does not fit: retrying cannot help
            error = describe_error(exc, step.id, attempt)
            error["code"] = "input.invalid"
            error["message"] = (
                f"step '{step.id}' in run {self.run_id}: its input does not match {step.input_codec.type!r}; "
                f"check the output of the step before it: {validation_summary(exc)}"
            )
            return await self._settle_failure(step, key, attempt, value, None, error, started)
        except StepOutputInvalid as exc:  # e.g. a foreach's collected results over the payload limit
            error = describe_error(exc, step.id, attempt)
            return await self._settle_failure(step, key, attempt, value, None, error, started)
        if options.skip_if is not None:
            ctx = Context(self, step.id, key, attempt)
            try:
                verdict = call_with_optional_context(options.skip_if, takes_context(options.skip_if), ctx, value)
                skip = bool(await verdict if inspect.isawaitable(verdict) else verdict)
            except BaseException as raised:  # a failing predicate fails the step, like the step would
                if is_engine_signal(raised):
                    raise
                error = describe_error(
                    raised.original if isinstance(raised, UserCodeExit) else raised, step.id, attempt
                )
                error["message"] = f"step '{step.id}' in run {self.run_id}: its skip_if raised {error['message']}"
                return await self._settle_failure(step, key, attempt, value, input_json, error, started)
            if skip:
                await self._record(key, step.id, attempt, "skipped", input_json, input_json, None, started)
                return value
        while True:
            try:
                await self._observe("step_started", step.id, key, attempt)
                async with self._queue_slot(options.queue, key):
                    output = await self._attempt(step, key, attempt, input_value)
                output_json = self._dump(step.output_codec, output, step.id)
            except SkipRequest:  # the step chose not to run (a document block's `when`): later reads see null
                await self._record(key, step.id, attempt, "skipped", input_json, "null", None, started)
                return None
            except BaseException as raised:  # every failure of user code is recorded, not raised
                if is_engine_signal(raised):
                    raise
                failure = raised.original if isinstance(raised, UserCodeExit) else raised
                budget_used += 1
                error = describe_error(failure, step.id, attempt)
                await self._observe("step_ended", step.id, key, attempt, error=public_error(error))
                if not options.retry.should_retry(failure, budget_used):
                    return await self._settle_failure(step, key, attempt, value, input_json, error, started)
                delay = options.retry.delay_before(budget_used + 1)
                retrying = ("step.retrying", {"next_attempt": attempt + 1, "delay_seconds": round(delay, 3)})
                await self._record(
                    key, step.id, attempt, "failed", input_json, None, json.dumps(error), started, then=retrying
                )
                if delay >= PARK_RETRIES_LONGER_THAN or self.host.draining:  # shutting down: no new attempt here
                    retry_at = self._now() + delay
                    wait = WaitRow(self.run_id, key, "retry", retry_at, None, None, None, self._now())
                    info = {"kind": "retry", "step_id": step.id, "attempt": attempt + 1, "wake_at": retry_at}
                    self._park("waiting", retry_at, wait, info)
                await self.host.clock.sleep(delay)
                attempt += 1
                started = self.host.clock.now().timestamp()
                continue
            await self._observe("step_ended", step.id, key, attempt, output=output)
            defer = key == self._deferrable_key
            await self._record(key, step.id, attempt, "succeeded", input_json, output_json, None, started, defer=defer)
            self.outputs_by_step[step.id] = output_json
            self._last_output = (output, output_json, step.output_codec.type)
            return output

    def _queue_slot(self, queue: str | None, key: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold a slot of the step's queue while it runs, so its limits hold across all workers."""
        # Most steps have no queue: a plain null context costs less than entering a generator's.
        return contextlib.nullcontext() if queue is None else self._hold_slot(queue, key)

    @contextlib.asynccontextmanager
    async def _hold_slot(self, queue: str, key: str) -> AsyncIterator[None]:
        # Unambiguous across namespaces: two namespaces may each run an "r1" on one queue.
        holder = json.dumps([self.run.namespace, self.run_id, key])
        store = self.host.store
        while True:
            retry_in = await store.acquire_slot(
                queue, holder, self.run_id, self._now(), wall_seconds(), self.host.lease_until()
            )
            if retry_in is None:
                break
            # Real time, like leases: the slot frees when another process finishes, whatever the clock says.
            await asyncio.sleep(min(retry_in, 1.0))
        try:
            yield
        finally:
            await store.release_slot(queue, holder)

    def hook_info(self, **fields: Any) -> HookInfo:
        run = self.run
        return HookInfo(run_id=run.id, workflow_id=run.workflow_id, workflow_version=run.workflow_version, **fields)

    async def _observe(self, what: str, step_id: str, key: str, attempt: int, **fields: Any) -> None:
        if self.observers:
            info = self.hook_info(step_id=step_id, step_key=key, attempt=attempt, **fields)
            for observer in self.observers:
                await getattr(observer, what)(info)

    def _input_json(self, step: Step[Any, Any], input_value: Any) -> str:
        """The stored input; in a chain it is the previous output, already serialized."""
        last = self._last_output
        if last is not None and last[0] is input_value and last[2] is step.input_codec.type:
            return last[1]
        return self._dump(step.input_codec, input_value, step.id)

    async def _attempt(self, step: Step[Any, Any], key: str, attempt: int, input_value: Any) -> Any:
        ctx = Context(self, step.id, key, attempt)
        self.log.begin(key, step.id, attempt, self._now())
        wait = self.waits.get(key)
        polling = wait is not None and wait.kind == "poll"
        if wait is not None and wait.kind == "resume":
            data = await self.host.store.peek_event(self.run.namespace, self.run_id, resume_event(key))
            if data is not None:
                ctx.resume_data = step.resume_codec.load(data) if step.resume_codec else json.loads(data)
        self._contexts.add(ctx)
        try:
            call = (
                step.invoke_check(ctx, json.loads(wait.state or "null"))
                if polling and wait
                else step.invoke(ctx, input_value)
            )
            if step.options.timeout is None:
                raw = await call
            else:
                try:
                    raw = await asyncio.wait_for(call, step.options.timeout)
                except TimeoutError as exc:
                    ctx.mark_cancelled()
                    raise StepTimeout(
                        f"step '{step.id}' in run {self.run_id} ran longer than its timeout of "
                        f"{step.options.timeout:g}s (attempt {attempt}); raise timeout= or make the step faster",
                        step_id=step.id,
                        attempt=attempt,
                    ) from exc
        except SuspendRequest as request:
            payload = jsonable(request.payload)
            resume = WaitRow(self.run_id, key, "resume", None, None, None, dump_any(payload), self._now())
            info = {"kind": "suspended", "step_id": step.id, "key": key, "payload": payload}
            self._park("suspended", FOREVER, resume, info, clear_events=resume_event(key))
        finally:
            self._contexts.discard(ctx)
        if isinstance(raw, Poll):
            self._park_poll(step, key, raw, wait if polling else None)
        try:
            return step.output_codec.validate(raw)
        except ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in err["loc"]) or "(value)" for err in exc.errors())
            raise StepOutputInvalid(
                f"step '{step.id}' in run {self.run_id} returned a value that does not match its output type "
                f"{step.output_codec.type!r} (fields: {fields}): {validation_summary(exc)}",
                step_id=step.id,
                attempt=attempt,
            ) from exc

    def _park_poll(self, step: Step[Any, Any], key: str, poll: Poll[Any], previous: WaitRow | None) -> None:
        """Schedule the next ``check``; fail once ``max_wait`` has passed."""
        now = self._now()
        if previous is not None:
            deadline = previous.deadline
        else:
            max_wait = poll.max_wait_seconds
            deadline = None if max_wait is None else now + max_wait
        if deadline is not None and now >= deadline:
            raise StepTimeout(
                f"step '{step.id}' in run {self.run_id} was still not done when its Poll max_wait ran out",
                step_id=step.id,
            )
        wake_at = now + poll.every_seconds
        if deadline is not None:
            wake_at = min(wake_at, deadline)
        wait = WaitRow(self.run_id, key, "poll", wake_at, deadline, None, dump_any(poll.state), now)
        self._park("waiting", wake_at, wait, {"kind": "poll", "step_id": step.id, "key": key, "next_check": wake_at})

    async def _settle_failure(
        self,
        step: Step[Any, Any],
        key: str,
        attempt: int,
        value: Any,
        input_json: str | None,
        error: dict[str, Any],
        started: float,
    ) -> Any:
        """A step failed for good: fail the run, or skip/continue as its ``on_error`` says."""
        on_error = step.options.on_error
        if on_error == "skip":
            passthrough = input_json if input_json is not None else "null"
            await self._record(key, step.id, attempt, "skipped", input_json, passthrough, json.dumps(error), started)
            return value
        if on_error == "continue":
            await self._record(key, step.id, attempt, "failed", input_json, "null", json.dumps(error), started)
            return None
        await self._record(key, step.id, attempt, "failed", input_json, None, json.dumps(error), started)
        raise StepFailure(error)

    def _dump(self, codec: Codec[Any], value: Any, step_id: str | None) -> str:
        """The stored JSON of a step's (None: the workflow's) value; StepOutputInvalid unless it reads back exactly."""
        where = "the workflow's result" if step_id is None else f"step '{step_id}'"
        try:
            text = codec.dump(value)
        except InputValidationError as exc:
            raise StepOutputInvalid(
                f"{where} in run {self.run_id} produced a value that cannot be stored as JSON: "
                f"{exc.message.removeprefix(UNSTORABLE).strip()}. "
                "Return Pydantic models, dicts, lists, strings and finite numbers",
                step_id=step_id,
            ) from exc
        if len(text) > self.host.max_payload_bytes:
            raise StepOutputInvalid(
                f"{where} in run {self.run_id} produced {len(text)} bytes of JSON, over the "
                f"{self.host.max_payload_bytes}-byte payload limit: store large data elsewhere and pass a reference, "
                "or raise Engine(max_payload_bytes=...)",
                step_id=step_id,
            )
        return text

    def _next_attempt(self, key: str) -> int:
        """Attempts number on from every stored one, including those before an ``engine.retry``."""
        return max(self._failed_attempts.get(key, 0), self._attempts_seen.get(key, 0)) + 1

    async def _record(
        self,
        key: str,
        step_id: str,
        attempt: int | None,
        status: str,
        input_json: str | None,
        output_json: str | None,
        error_json: str | None,
        started: float,
        *,
        defer: bool = False,
        then: tuple[str, dict[str, Any]] | None = None,
    ) -> None:
        """Commit one step attempt with its events; ``then`` is one more event after the outcome."""
        finished = self.host.clock.now().timestamp()
        made = self.pending_artifacts.pop(key, None) if self.pending_artifacts else None
        row = StepRow(
            run_id=self.run_id,
            step_key=key,
            step_id=step_id,
            attempt=self._next_attempt(key) if attempt is None else attempt,
            status=status,
            input=input_json,
            output=output_json,
            error=error_json,
            started_at=started,
            finished_at=finished,
            artifacts=tuple(made.values()) if made and status == "succeeded" else (),
        )
        outcome: dict[str, Any] = {"duration_ms": round((finished - started) * 1000, 3)}
        if error_json is not None:
            outcome["error"] = public_error(json.loads(error_json))
        type_ = {"succeeded": "step.completed", "skipped": "step.skipped"}.get(status, "step.failed")
        async with self.log.writing():
            events = self.log.step_events(key, step_id, row.attempt, started, type_, outcome, at=finished)
            if then is not None and self.log.enabled:
                events.append(self.log.event(then[0], payload=then[1], step_id=step_id, key=key, attempt=row.attempt))
            usage = self.usage.take(key)
            if defer:
                self.deferred_step, self.deferred_events, self.deferred_usage = row, events, usage
            else:
                await self.host.store.record_step(self.lease, row, events, usage)
                if usage:
                    self.usage.committed(usage)
        if output_json is not None:
            self._resolved[key] = row
        self._attempts_seen[key] = row.attempt


def _replay(task: Task, row: StepRow) -> Any:
    """The value a resolved step handed on: its output, its input if skipped, None if it failed on."""
    text = row.output or "null"
    if row.status == "failed":
        return None
    if isinstance(task, ChildTask):
        codec = task.workflow.input_codec if row.status == "skipped" else task.workflow.output_codec
    else:
        codec = task.input_codec if row.status == "skipped" else task.output_codec
    return codec.load(text)
