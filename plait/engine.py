"""The engine: registers workflows, starts runs and answers questions about them."""

from __future__ import annotations

import asyncio
import atexit
import base64
import json
import os
import signal
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel

from plait.artifacts import ArtifactStorage, open_blob_store
from plait.clock import Clock, SystemClock, to_seconds
from plait.documents.connectors import Connector
from plait.documents.model import WorkflowDocument
from plait.documents.registry import EnvAllowList
from plait.documents.secrets import SecretSource
from plait.engine_artifacts import ArtifactsMixin
from plait.engine_documents import DocumentsMixin
from plait.engine_execute import ExecuteMixin
from plait.engine_feeds import FeedsMixin
from plait.engine_planning import PlanningMixin
from plait.engine_schedules import SchedulesMixin
from plait.engine_signals import SignalsMixin
from plait.engine_triggers import CompletionTrigger, TriggersMixin
from plait.engine_usage import UsageMixin
from plait.errors import (
    DuplicateWorkflow,
    IdempotencyConflict,
    InputValidationError,
    ResultTimeout,
    RunNotFound,
    RunStateError,
    WorkflowDefinitionError,
    WorkflowNotFound,
)
from plait.hooks import Hook, HookInfo, HookRunner, Hooks
from plait.ids import is_valid_run_id
from plait.loop_thread import LoopThread
from plait.new_runs import new_run_row, spec_run_row
from plait.payloads import DEFAULT_MAX_PAYLOAD_BYTES, dump_any, validate_input
from plait.planning.plan import Plan
from plait.queues import Queue
from plait.runs import Page, Run, RunHandle, RunStatus, StepRecord, outcome
from plait.specs import Spec
from plait.stalls import describe_stall
from plait.step_config import config_json, merged_config_json
from plait.store import open_store
from plait.store import schedules as schedule_table
from plait.store.base import NewRun, RunFilter, RunRow, Store
from plait.store.run_listing import RUN_ORDERS, sort_key_of
from plait.subscriptions import Subscription
from plait.tracing import Tracer, current_trace_context, tracing_available
from plait.usage.models import Budget
from plait.webhooks import WebhookDispatcher
from plait.worker import Worker
from plait.workflow.graph import ChildTask, Workflow, node_id, node_tasks

I = TypeVar("I")  # noqa: E741 - reads as "input"
O = TypeVar("O")  # noqa: E741 - reads as "output"
T = TypeVar("T")

DEFAULT_URL = "sqlite:///plait.db"
MAX_REASON_CHARS = 4000

RunOrder = Literal["-created", "created", "-finished"]


class Engine(
    FeedsMixin,
    SignalsMixin,
    SchedulesMixin,
    TriggersMixin,
    DocumentsMixin,
    UsageMixin,
    ExecuteMixin,
    ArtifactsMixin,
    PlanningMixin,
):
    """Runs workflows durably on a database (SQLite by default).

    ``url`` defaults to ``PLAIT_DATABASE_URL``, else ``sqlite:///plait.db``.
    With ``worker=True`` a worker runs in the background of this process from
    first use; ``worker=False`` makes a client that only starts and reads runs.
    ``durability="full"`` (default) makes every commit survive power loss;
    ``"normal"`` is faster and survives process crashes but may lose the last
    commits on power loss. On PostgreSQL, ``schema`` (or ``?schema=`` in the
    URL) puts plait's tables in their own schema. ``events=False`` turns the
    event log off (no run.events(), feed, subscriptions or webhooks). With the
    ``otel`` extra installed, ``tracing`` emits OpenTelemetry spans.
    ``concurrency`` is how many runs this process executes at once (a run
    parked on a sleep or an event holds none; ``def`` steps share at most 64
    threads). ``close()`` lets each step in flight finish and commit for up to
    ``shutdown_grace`` seconds, then hands its run back to the queue.
    ``secrets`` (a mapping, or a function name -> value) fills connectors'
    hidden params at each attempt (default: the environment variable of that
    name); ``document_env`` lists the ``{{env.NAME}}`` names documents may read.
    ``store_prompts=True`` keeps the prompts and responses given to
    ``ctx.record_usage`` (never SecretStr or Hidden values).
    ``webhook_timeout`` is the total deadline of one webhook delivery, answer included.
    ``blobs`` is where artifacts over 64 KiB go: a directory or ``file://``
    URL (by default ``<sqlite file>-blobs``; none on PostgreSQL), or any
    fsspec URL (``s3://bucket/prefix``) with ``fsspec`` installed.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str = "default",
        clock: Clock | None = None,
        worker: bool = True,
        concurrency: int = 256,
        lease_seconds: float = 30.0,
        poll_interval: float = 0.25,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        durability: Literal["full", "normal"] = "full",
        schema: str | None = None,
        events: bool = True,
        tracing: bool = True,
        webhook_max_attempts: int = 5,
        webhook_backoff: float = 1.0,
        shutdown_grace: float = 30.0,
        secrets: SecretSource | None = None,
        document_env: EnvAllowList | None = None,
        store_prompts: bool = False,
        webhook_timeout: float = 10.0,
        blobs: str | None = None,
    ) -> None:
        self.url = url or os.environ.get("PLAIT_DATABASE_URL") or DEFAULT_URL
        self.namespace = namespace
        self.clock: Clock = clock or SystemClock()
        self._run_worker = worker
        self._store: Store = open_store(self.url, durability=durability, schema=schema)
        self._workflows: dict[str, dict[str, Workflow[Any, Any]]] = {}
        self._pending_queues: dict[str, Queue] = {}
        self._subscriptions: list[Subscription] = []
        self._triggers: list[CompletionTrigger] = []
        self._email_routes: dict[str, Workflow[Any, Any]] = {}
        self._http_triggers: list[Any] = []
        self._latest: dict[str, Workflow[Any, Any]] = {}
        self._loop = LoopThread("plait-engine", max_threads=max(4, min(concurrency, 64)))
        self._worker = Worker(
            self._store,
            self.clock,
            namespace,
            self._lookup,
            self._refs,
            concurrency=concurrency,
            lease_seconds=lease_seconds,
            poll_interval=poll_interval,
            max_payload_bytes=max_payload_bytes,
            before_claim=self._before_claim,
            other_due=lambda: schedule_table.next_due(self._store, namespace),
        )
        self._store.record_events = events
        self._init_documents(secrets, document_env)
        self._worker.store_prompts = store_prompts
        self._artifacts = ArtifactStorage(self._store, open_blob_store(blobs, self.url), namespace)
        self._worker.artifacts = self._artifacts
        self._specs: dict[str, Spec[Any, Any]] = {}
        self._hooks = HookRunner()
        if tracing and tracing_available():
            self._worker.tracer = Tracer()
        self._dispatcher = WebhookDispatcher(
            self._store,
            self.clock,
            namespace,
            self._worker.owner,
            max_attempts=webhook_max_attempts,
            first_backoff=webhook_backoff,
            timeout=webhook_timeout,
            poll=poll_interval,
            lease_seconds=lease_seconds,
        )
        self._worker.before_finish = self._start_follow_ups
        self._worker.child_starter = self._start_child
        self._started = False
        self._grace = shutdown_grace
        self._stop_requested = threading.Event()  # SIGTERM, Ctrl-C or close(): work() returns
        self._closed = False
        self._close_lock = threading.Lock()  # one shutdown, however many threads call close()
        self._start_lock = threading.Lock()
        self._loop.run(self._store.migrate())
        self.clock.on_advance(lambda: self._loop.call_soon(self._worker.wake))
        # A script that never calls close() still shuts down cleanly at exit: no pool task is left
        # pending for the interpreter to destroy (PostgreSQL's "Task was destroyed" warnings).
        atexit.register(_close_at_exit, weakref.ref(self))

    # -- lifecycle -----------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._started or not self._run_worker:
            return
        with self._start_lock:
            if not self._started:
                self._loop.call_soon(self._worker.start)
                self._loop.call_soon(self._dispatcher.start)
                self._started = True

    def client_only(self) -> None:
        """Make this engine a client before first use, as if made with ``worker=False``: it runs nothing.

        For a process that starts runs and exits (``plait run`` without ``--wait``).
        Raises RuntimeError once its worker has started.
        """
        with self._start_lock:
            if self._started:
                raise RuntimeError("this engine's worker already started; make it with Engine(worker=False) instead")
            self._run_worker = False

    def close(self) -> None:
        """Stop the worker and close the database; safe to call from any thread, any number of times.

        The worker claims nothing more. Each step already running finishes and
        is committed (for up to ``shutdown_grace`` seconds), then its run is
        handed back at that step boundary, so another worker continues it and
        no committed step runs twice. Runs are only cancelled if the grace ends first.
        """
        if self._loop.is_current():
            raise RuntimeError("engine.close() cannot be called from inside a step; close it from outside")
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._stop_requested.set()
            try:
                self._loop.run(self._shutdown())
            finally:
                self._loop.stop()

    async def aclose(self) -> None:
        """Async twin of ``close``."""
        await asyncio.to_thread(self.close)

    async def _shutdown(self) -> None:
        for subscription in self._subscriptions:
            await subscription.stop()
        if self._started:
            await self._worker.stop(self._grace)
            await self._dispatcher.stop()
        await self._store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def work(self, *, concurrency: int | None = None, grace: float | None = None) -> None:
        """Run this process's worker in the foreground until SIGINT/SIGTERM or ``close()``.

        On SIGTERM it stops claiming, lets running runs reach a step boundary
        for up to ``grace`` seconds (default: the engine's ``shutdown_grace``),
        hands back what is left, and returns.
        """
        if concurrency is not None:
            self._worker.set_concurrency(concurrency)
        self._run_worker = True
        if grace is not None:
            self._grace = grace
        self._ensure_started()
        on_main_thread = threading.current_thread() is threading.main_thread()
        if on_main_thread:
            previous = signal.signal(signal.SIGTERM, lambda *_: self._stop_requested.set())
        try:
            while not self._stop_requested.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            if on_main_thread:
                signal.signal(signal.SIGTERM, previous)
            self.close()  # returns at once, or after the close() another thread began

    async def awork(self) -> None:
        await asyncio.to_thread(self.work)

    def run_until_idle(self, timeout: float = 30.0) -> None:
        """Block until this engine's worker has done everything that is due now.

        For tests: ``clock.advance(days=1); engine.run_until_idle()`` then look
        at the runs. Raises TimeoutError if work is still going after ``timeout``.
        """
        self._ensure_started()
        self._loop.run(self._worker.run_until_idle(timeout))

    async def arun_until_idle(self, timeout: float = 30.0) -> None:
        self._ensure_started()
        await self._loop.run_async(self._worker.run_until_idle(timeout))

    # -- workflows -----------------------------------------------------------

    def register(
        self, *items: Workflow[Any, Any] | Queue | Connector[Any, Any] | WorkflowDocument | Spec[Any, Any]
    ) -> None:
        """Make workflows (and the child workflows they use) runnable by this engine, and store queue limits.

        Connectors join the engine's registry; documents are compiled (DocumentInvalid
        lists every problem) and registered as workflows.

        Queues named by a workflow or its steps as ``plait.Queue`` objects are
        registered with it; their limits are written to the database, where
        every worker reads them.
        """
        for item in items:
            if isinstance(item, Queue):
                self._pending_queues[item.name] = item
                continue
            if isinstance(item, Spec):  # a client may start it by name; a worker needs plait.workflow(spec)
                self._specs[item.ref] = item
                continue
            if self._register_document_item(item):
                continue
            if not isinstance(item, Workflow):
                raise WorkflowDefinitionError(
                    "register() takes committed workflows (builder.commit()), plait.Queue, connectors or "
                    f"plait.WorkflowDocument (parse a dict with WorkflowDocument.parse), got {item!r:.200}"
                )
            versions = self._workflows.setdefault(item.id, {})
            known = versions.get(item.version)
            if known is not None and known is not item and known.to_dict() != item.to_dict():
                raise DuplicateWorkflow(
                    f"workflow '{item.id}' version '{item.version}' is already registered with a different "
                    "plan: give the new one another version=..., or leave version unset to use the content hash"
                )
            versions[item.version] = item
            self._latest[item.id] = item
            for queue in item.queues():
                self._pending_queues[queue.name] = queue
            children = [t.workflow for t in item.iter_steps() if isinstance(t, ChildTask)]
            if children:
                self.register(*children)
        self._loop.call_soon(self._worker.wake)

    async def _before_claim(self) -> None:
        await self._store_queues()
        await self._fire_due_schedules()

    async def _store_queues(self) -> None:
        """Write queue limits registered since the last call (on the engine's loop, before they matter)."""
        if self._pending_queues:
            queues, self._pending_queues = list(self._pending_queues.values()), {}
            await self._store.register_queues(queues)

    def add_hooks(self, hooks: Hooks | None = None, **callbacks: Hook) -> None:
        """Call hooks around every run and step of this engine: a ``plait.Hooks`` or its fields by name.

        ``engine.add_hooks(after_run=notify)``; a hook that raises is logged (and told to
        ``on_hook_error``) and never breaks a run.
        """
        try:
            self._hooks.hooks.append(hooks or Hooks(**callbacks))
        except TypeError as exc:
            raise WorkflowDefinitionError(
                "add_hooks() takes before_run, after_run, before_step, after_step, on_step_error, "
                f"on_run_created, on_run_cancelled, on_hook_error: {exc}"
            ) from exc
        if self._hooks not in self._worker.observers:  # no hooks, no cost on the step path
            self._worker.observers.append(self._hooks)

    async def _announce(self, hook: Literal["run_created", "run_cancelled"], row: RunRow) -> None:
        """Call ``on_run_created`` / ``on_run_cancelled`` of this engine's hooks and of the run's workflow."""
        workflow = self._lookup(row.workflow_id, row.workflow_version)
        runners = [self._hooks] + ([HookRunner([workflow.hooks])] if workflow and workflow.hooks else [])
        info = HookInfo(run_id=row.id, workflow_id=row.workflow_id, workflow_version=row.workflow_version)
        for runner in runners:
            if runner.active:
                await getattr(runner, hook)(replace(info, status=row.status))

    def workflows(self) -> list[Workflow[Any, Any]]:
        """The latest registered version of every workflow."""
        return list(self._latest.values())

    def get_workflow(self, workflow_id: str, version: str | None = None) -> Workflow[Any, Any]:
        """A registered workflow (its latest version unless ``version`` is given)."""
        workflow = self._lookup(workflow_id, version) if version else self._latest.get(workflow_id)
        if workflow is None:
            known = ", ".join(sorted(self._latest)) or "none"
            raise WorkflowNotFound(
                f"workflow '{workflow_id}'{f' version {version!r}' if version else ''} is not registered "
                f"(registered: {known}); call engine.register(workflow) first"
            )
        return workflow

    def _lookup(self, workflow_id: str, version: str | None) -> Workflow[Any, Any] | None:
        return self._workflows.get(workflow_id, {}).get(version or "")

    def _refs(self) -> list[str]:
        return [f"{wid}@{version}" for wid, versions in self._workflows.items() for version in versions]

    # -- starting runs -------------------------------------------------------

    @overload
    def start(
        self,
        workflow: Workflow[I, O],
        input: I | Mapping[str, Any],
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        priority: int = 0,
        delay: timedelta | float | None = None,
        metadata: Mapping[str, Any] | None = None,
        budget: Budget | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> RunHandle[O]: ...
    @overload
    def start(
        self,
        workflow: Spec[I, O],
        input: I | Mapping[str, Any],
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        priority: int = 0,
        delay: timedelta | float | None = None,
        metadata: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> RunHandle[O]: ...
    @overload
    def start(
        self,
        workflow: Plan,
        input: Any,
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        priority: int = 0,
        delay: timedelta | float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> RunHandle[Any]: ...
    @overload
    def start(
        self,
        workflow: str,
        input: Any,
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        priority: int = 0,
        delay: timedelta | float | None = None,
        metadata: Mapping[str, Any] | None = None,
        budget: Budget | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> RunHandle[Any]: ...
    def start(
        self,
        workflow: Workflow[Any, Any] | Spec[Any, Any] | str | Plan,
        input: Any,
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        priority: int = 0,
        delay: timedelta | float | None = None,
        metadata: Mapping[str, Any] | None = None,
        budget: Budget | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> RunHandle[Any]:
        """Start a run and return its handle; the run is durable once this returns.

        Input is validated first (InputValidationError, and no run is created).
        The same ``idempotency_key`` (or ``run_id``) with the same workflow and
        input returns the existing run; reused with another workflow or input
        it raises IdempotencyConflict. ``budget`` limits this run's model usage
        instead of the workflow's budget. ``workflow`` is a workflow, a
        ``plait.spec`` (run by the workers that implement it), or a name:
        ``"id"`` (latest registered) or ``"id@version"``. ``config`` gives
        steps their settings by step id (``{"summarize": {"max_length": 100}}``),
        validated like the input and stored with the run.
        """
        if isinstance(workflow, Plan):  # a plan runs its recipe's body and records the recipe
            body, input, metadata = self._plan_target(workflow, input, metadata)
            return self.start(
                body, input, run_id=run_id, idempotency_key=idempotency_key, priority=priority, delay=delay,
                metadata=metadata, budget=budget, config=config,
            )  # fmt: skip
        if self._is_document_target(workflow):  # a document, or the id of a stored one
            workflow = self._loop.run(self._stored_document_workflow(workflow))
        assert not isinstance(workflow, Plan)  # plans returned above
        new = self._prepare_run(workflow, input, run_id, idempotency_key, priority, delay, metadata, budget, config)
        row = self._loop.run(self._create(new, run_id_given=run_id is not None))
        return RunHandle(self, row.id)

    @overload
    async def astart(
        self,
        workflow: Workflow[I, O],
        input: I | Mapping[str, Any],
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        priority: int = 0,
        delay: timedelta | float | None = None,
        metadata: Mapping[str, Any] | None = None,
        budget: Budget | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> RunHandle[O]: ...
    @overload
    async def astart(
        self,
        workflow: Spec[I, O],
        input: I | Mapping[str, Any],
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        priority: int = 0,
        delay: timedelta | float | None = None,
        metadata: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> RunHandle[O]: ...
    @overload
    async def astart(
        self,
        workflow: Plan,
        input: Any,
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        priority: int = 0,
        delay: timedelta | float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> RunHandle[Any]: ...
    @overload
    async def astart(
        self,
        workflow: str,
        input: Any,
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        priority: int = 0,
        delay: timedelta | float | None = None,
        metadata: Mapping[str, Any] | None = None,
        budget: Budget | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> RunHandle[Any]: ...
    async def astart(
        self,
        workflow: Workflow[Any, Any] | Spec[Any, Any] | str | Plan,
        input: Any,
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        priority: int = 0,
        delay: timedelta | float | None = None,
        metadata: Mapping[str, Any] | None = None,
        budget: Budget | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> RunHandle[Any]:
        """Async twin of ``start``."""
        if isinstance(workflow, Plan):  # a plan runs its recipe's body and records the recipe
            body, input, metadata = await asyncio.to_thread(self._plan_target, workflow, input, metadata)
            return await self.astart(
                body, input, run_id=run_id, idempotency_key=idempotency_key, priority=priority, delay=delay,
                metadata=metadata, budget=budget, config=config,
            )  # fmt: skip
        if self._is_document_target(workflow):  # a document, or the id of a stored one
            workflow = await self._loop.run_async(self._stored_document_workflow(workflow))
        assert not isinstance(workflow, Plan)  # plans returned above
        new = self._prepare_run(workflow, input, run_id, idempotency_key, priority, delay, metadata, budget, config)
        row = await self._loop.run_async(self._create(new, run_id_given=run_id is not None))
        return RunHandle(self, row.id, created=row)

    def _prepare_run(
        self,
        target: Workflow[Any, Any] | Spec[Any, Any] | str,
        input: Any,
        run_id: str | None,
        idempotency_key: str | None,
        priority: int,
        delay: timedelta | float | None,
        metadata: Mapping[str, Any] | None,
        budget: Budget | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> NewRun:
        if run_id is not None and not is_valid_run_id(run_id):
            raise InputValidationError(
                f"run id {run_id!r} is not valid: use 1 to 255 printable characters (no control characters)"
            )
        workflow = self._start_target(target)
        value = validate_input(workflow.input_codec, input, f"input for workflow '{workflow.id}'")
        if isinstance(input, BaseModel) and not isinstance(value, BaseModel):
            value = input
        input_json = workflow.input_codec.dump(value)
        if len(input_json) > self._worker.max_payload_bytes:
            raise InputValidationError(
                f"input for workflow '{workflow.id}' is {len(input_json)} bytes of JSON, over the "
                f"{self._worker.max_payload_bytes}-byte payload limit: pass a reference to large data instead"
            )
        now = self.clock.now().timestamp()
        delay_seconds = 0.0 if delay is None else to_seconds(delay)
        if delay_seconds < 0:
            raise InputValidationError("delay must not be negative")
        if not -(2**31) <= priority < 2**31:  # both stores keep a 32-bit integer
            raise InputValidationError(f"priority must be a 32-bit integer (-2**31 to 2**31-1), got {priority}")
        if isinstance(workflow, Spec):
            if config is not None:
                raise InputValidationError(
                    f"config cannot be checked against spec '{workflow.ref}' (a spec has no steps): "
                    "start the run where the workflow is registered"
                )
            self._specs.setdefault(workflow.ref, workflow)  # result() loads the output as the spec's type
        fields: dict[str, Any] = {
            "namespace": self.namespace,
            "now": now,
            "value": value,
            "run_id": run_id,
            "ready_at": now + delay_seconds,
            "idempotency_key": idempotency_key,
            "priority": priority,
            "metadata": dump_any(dict(metadata)) if metadata else None,
            "trace_context": current_trace_context(),
            "budget": budget.model_dump_json() if budget is not None else None,
        }
        if isinstance(workflow, Spec):
            return spec_run_row(workflow, input_json, **fields)
        return new_run_row(workflow, input_json, config=config_json(workflow, config), **fields)

    def _start_target(self, target: Workflow[Any, Any] | Spec[Any, Any] | str) -> Workflow[Any, Any] | Spec[Any, Any]:
        """What ``start`` was given, as a registered workflow or, where none implements it here, a spec."""
        if isinstance(target, Workflow):
            if self._lookup(target.id, target.version) is not target:
                self.register(target)
            return target
        if isinstance(target, Spec):
            return self._lookup(target.id, target.version) or target
        workflow_id, _, version = target.partition("@")
        if version and self._lookup(workflow_id, version) is None and target in self._specs:
            return self._specs[target]
        if not version and workflow_id not in self._latest:
            named = [spec for spec in self._specs.values() if spec.id == workflow_id]
            if named:
                return named[-1]
        return self.get_workflow(workflow_id, version or None)

    async def _create(self, new: NewRun, *, run_id_given: bool = False) -> RunRow:
        self._ensure_started()
        await self._store_queues()
        # A run that is due now goes straight to this process's worker when it
        # has room: claiming it in the creating transaction saves a commit.
        claim_now = self._run_worker and new.ready_at <= new.created_at and self._worker.has_capacity
        # A spec's run waits for a worker that implements it, unless this one does.
        claim_now = claim_now and self._lookup(new.workflow_id, new.workflow_version) is not None
        if claim_now:
            new = replace(new, owner=self._worker.owner, lease_expires_at=self._worker.lease_until())
        async with self._worker.claiming():
            row, created = await self._store.create_run(new)
            # The store creates it pending instead when its queue has limits: the claim loop applies them.
            if created and claim_now and row.owner == self._worker.owner:
                self._worker.adopt(row, fresh=True)
            elif created:
                self._worker.wake()
        if not created:
            _check_same_request(row, new, run_id_given)
        if created:
            await self._announce("run_created", row)
        return row

    # -- reading runs --------------------------------------------------------

    def get_run(self, run_id: str) -> RunHandle[Any]:
        """A handle to an existing run; raises RunNotFound."""
        self._loop.run(self._get_row(run_id))
        return RunHandle(self, run_id)

    async def aget_run(self, run_id: str) -> RunHandle[Any]:
        await self._loop.run_async(self._get_row(run_id))
        return RunHandle(self, run_id)

    def list_runs(
        self,
        *,
        workflow: Workflow[Any, Any] | str | None = None,
        status: RunStatus | str | Sequence[RunStatus | str] | None = None,
        parent: str | None = None,
        order: RunOrder = "-created",
        waiting_for_version: bool = False,
        parent_run_id: str | None = None,
        idempotency_key: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        recipe: str | None = None,
    ) -> Page[Run]:
        """Runs in ``order``: "-created" (newest first), "created" or "-finished" (unfinished last).

        ``status`` is one status or a list of them; ``parent`` gives the child
        runs of that run. Pass ``next_cursor`` back as ``cursor`` for the next
        page (with the same filters and order). ``waiting_for_version=True``
        finds runs no worker can execute; ``idempotency_key`` finds the run
        started with that key (``parent_run_id`` is another name for ``parent``);
        ``recipe`` keeps the runs started from plans of that recipe id.
        """
        where = _run_filter(
            workflow, status, parent or parent_run_id, order, waiting_for_version, idempotency_key, recipe
        )
        return self._loop.run(self._list_runs(where, limit, cursor))

    async def alist_runs(
        self,
        *,
        workflow: Workflow[Any, Any] | str | None = None,
        status: RunStatus | str | Sequence[RunStatus | str] | None = None,
        parent: str | None = None,
        order: RunOrder = "-created",
        waiting_for_version: bool = False,
        parent_run_id: str | None = None,
        idempotency_key: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        recipe: str | None = None,
    ) -> Page[Run]:
        """Async twin of ``list_runs``."""
        where = _run_filter(
            workflow, status, parent or parent_run_id, order, waiting_for_version, idempotency_key, recipe
        )
        return await self._loop.run_async(self._list_runs(where, limit, cursor))

    async def _list_runs(self, where: RunFilter, limit: int, cursor: str | None) -> Page[Run]:
        if not 1 <= limit <= 1000:
            raise InputValidationError("limit must be between 1 and 1000")
        after = _decode_cursor(cursor, where.order) if cursor else None
        rows = await self._store.list_runs(self.namespace, where, limit + 1, after)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = None
        if more and rows:
            last = rows[-1]
            next_cursor = _encode_cursor(
                where.order, sort_key_of(where.order, last.created_at, last.finished_at), last.id
            )
        return Page[Run](items=[Run.from_row(r) for r in rows], next_cursor=next_cursor)

    def count_runs(
        self,
        *,
        status: RunStatus | str | Sequence[RunStatus | str] | None = None,
        workflow: Workflow[Any, Any] | str | None = None,
    ) -> int:
        """How many runs have that status (one or a list) and workflow."""
        where = _run_filter(workflow, status, None, "-created", False)
        return self._loop.run(self._store.count_runs(self.namespace, where))

    async def acount_runs(
        self,
        *,
        status: RunStatus | str | Sequence[RunStatus | str] | None = None,
        workflow: Workflow[Any, Any] | str | None = None,
    ) -> int:
        """Async twin of ``count_runs``."""
        where = _run_filter(workflow, status, None, "-created", False)
        return await self._loop.run_async(self._store.count_runs(self.namespace, where))

    async def _get_row(self, run_id: str) -> RunRow:
        row = await self._store.get_run(self.namespace, run_id)
        if row is None:
            raise RunNotFound(f"no run {run_id!r} in namespace '{self.namespace}'; check the id (engine.list_runs())")
        return row

    async def _get_run_info(self, run_id: str) -> Run:
        return await self._run_with_usage(Run.from_row(await self._get_row(run_id)))

    async def _steps(self, run_id: str) -> list[StepRecord]:
        run = await self._get_row(run_id)
        records = [StepRecord.from_row(row) for row in await self._store.load_steps(self.namespace, run_id)]
        return await self._steps_with_usage(run_id, records) if run.usage_calls else records

    def _wait_for_end(self, run_id: str, timeout: float | None) -> tuple[bool, Any]:
        """(True, the outcome) of a run executing in this process, handed over by its end; else (False, None).

        For a thread other than the loop's; (False, None) means: ask the store (``_result``).
        """
        if self._loop.is_current():
            return False, None
        row = self._worker.wait_for_end(self.namespace, run_id, timeout)
        if row is None:
            return False, None
        return True, self._outcome(row)

    def _outcome(self, row: RunRow) -> Any:
        workflow = self._lookup(row.workflow_id, row.workflow_version)
        spec = self._specs.get(f"{row.workflow_id}@{row.workflow_version}") if workflow is None else None
        return outcome(row, workflow.output_codec if workflow else spec.output_codec if spec else None)

    async def _result(self, run_id: str, timeout: float | None) -> Any:
        self._ensure_started()
        try:
            row = await self._worker.wait_for_terminal(self.namespace, run_id, timeout)
        except TimeoutError as exc:  # say why the run is not moving, not only that time ran out
            now = await self._get_row(run_id)
            why = describe_stall(now, self.clock.now().timestamp(), has_worker=self._run_worker)
            raise ResultTimeout(
                f"run {run_id} of workflow '{now.workflow_id}' did not finish within {timeout:g}s: {why}. "
                f"The run goes on; wait again, or follow it with `plait runs show {run_id}`",
                run_id=run_id,
                status=now.status,
            ) from exc
        return self._outcome(row)

    # -- acting on runs ------------------------------------------------------

    def cancel(self, run_id: str, *, reason: str | None = None) -> bool:
        """Cancel a run and its child runs; False if it had already ended. Cooperative for running steps.

        ``reason`` is stored on the run (``Run.cancel_reason``) and carried by its ``run.cancelled`` event.
        """
        return self._loop.run(self._cancel(run_id, reason))

    async def acancel(self, run_id: str, *, reason: str | None = None) -> bool:
        """Async twin of ``cancel``."""
        return await self._loop.run_async(self._cancel(run_id, reason))

    async def _cancel(self, run_id: str, reason: str | None = None) -> bool:
        if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS or "\x00" in reason):
            raise InputValidationError(
                f"a cancel reason is text of at most {MAX_REASON_CHARS} characters, without NUL bytes"
            )
        await self._get_row(run_id)
        now = self.clock.now().timestamp()
        cancelled = await self._store.cancel_run(self.namespace, run_id, now, reason)
        self._worker.cancel_local(cancelled)
        for gone in cancelled:
            gone_row = await self._store.get_run(self.namespace, gone)
            if gone_row is not None:
                await self._announce("run_cancelled", gone_row)
        return run_id in cancelled

    def retry(self, run_id: str) -> RunHandle[Any]:
        """Continue a failed run from its failed step (finished steps are not run again)."""
        return self._loop.run(self._retry(run_id))

    async def aretry(self, run_id: str) -> RunHandle[Any]:
        return await self._loop.run_async(self._retry(run_id))

    async def _retry(self, run_id: str) -> RunHandle[Any]:
        row = await self._get_row(run_id)
        if row.status != "failed":
            raise RunStateError(f"run {run_id} is {row.status}; only failed runs can be retried")
        self._ensure_started()
        await self._store.reopen_run(self.namespace, run_id, self.clock.now().timestamp())
        self._worker.wake()
        return RunHandle(self, run_id)

    def rerun_from(self, run_id: str, step_id: str, *, config: Mapping[str, Any] | None = None) -> RunHandle[Any]:
        """Fork a new run of the same input that reuses the outputs (and artifacts) of the steps before ``step_id``.

        The new run's usage totals start at the usage of the steps it reuses
        (their calls are copied, marked carried; ``engine.usage`` counts them once).
        ``config`` changes step settings for the new run, merged field by
        field over the source run's (validated as in ``start``).
        """
        return self._loop.run(self._rerun_from(run_id, step_id, config))

    async def arerun_from(
        self, run_id: str, step_id: str, *, config: Mapping[str, Any] | None = None
    ) -> RunHandle[Any]:
        return await self._loop.run_async(self._rerun_from(run_id, step_id, config))

    async def _rerun_from(self, run_id: str, step_id: str, config: Mapping[str, Any] | None = None) -> RunHandle[Any]:
        source = await self._get_row(run_id)
        workflow = self._lookup(source.workflow_id, source.workflow_version)
        if workflow is None:
            raise WorkflowNotFound(
                f"run {run_id} used workflow '{source.workflow_id}' version '{source.workflow_version}', which is "
                "not registered here; register that version to rerun it"
            )
        index = workflow.node_index_of(step_id)
        if index is None:
            raise InputValidationError(
                f"workflow '{workflow.id}' has no step '{step_id}'; steps: "
                + ", ".join(t.id for t in workflow.iter_steps())
            )
        new_config = merged_config_json(workflow, source.config, config)
        keep = {task.id for node in workflow.nodes[:index] for task in node_tasks(node)}
        keep |= {node_id(node) for node in workflow.nodes[:index]}
        steps = await self._store.load_steps(self.namespace, run_id)
        keys = [row.step_key for row in steps if _step_id_of(row.step_key) in keep and row.output is not None]
        now = self.clock.now().timestamp()
        metadata = {**json.loads(source.metadata or "{}"), "rerun_of": run_id, "rerun_from": step_id}
        new = new_run_row(
            workflow,
            source.input,
            namespace=self.namespace,
            now=now,
            priority=source.priority,
            metadata=json.dumps(metadata),
            budget=source.budget,
            config=new_config,
        )
        row = await self._store.fork_run(new, run_id, keys)
        self._ensure_started()
        self._worker.wake()
        return RunHandle(self, row.id)


def _check_same_request(existing: RunRow, new: NewRun, run_id_given: bool) -> None:
    """Raise IdempotencyConflict unless ``existing`` is the run ``new`` asked for again.

    A retried request (same key or run id, same workflow, same input) gets its
    run back; anything else would hand the caller someone else's run, or drop
    its input without a word.
    """
    what = f"idempotency key {new.idempotency_key!r}" if existing.id != new.id else f"run id {existing.id!r}"
    if new.idempotency_key is not None and existing.id == new.id and existing.idempotency_key != new.idempotency_key:
        raise IdempotencyConflict(
            f"run id {existing.id!r} already exists with another idempotency key; "
            "send the key it was started with, or choose another run id"
        )
    if existing.id != new.id and run_id_given:
        raise IdempotencyConflict(
            f"{what} is already used by run {existing.id!r}, not {new.id!r}; "
            "send the same run id with the same key, or use a new key"
        )
    if existing.workflow_id != new.workflow_id:
        raise IdempotencyConflict(
            f"{what} was already used to start workflow '{existing.workflow_id}' (run {existing.id}), "
            f"not '{new.workflow_id}'; use a new key (or run id) for a new run"
        )
    if not _same_json(existing.input, new.input):
        raise IdempotencyConflict(
            f"{what} was already used to start run {existing.id} of workflow '{existing.workflow_id}' with "
            "another input; resend the original input, or use a new key (or run id) for a new run"
        )


def _same_json(stored: str, given: str) -> bool:
    """Whether two JSON texts hold the same value (key order aside)."""
    if stored == given:
        return True
    try:
        return bool(json.loads(stored) == json.loads(given))
    except ValueError:
        return False


def _close_at_exit(ref: weakref.ref[Engine]) -> None:
    engine = ref()
    if engine is not None:
        engine.close()


def _step_id_of(step_key: str) -> str:
    for mark in ("[", "#"):
        step_key = step_key.split(mark, 1)[0]
    return step_key


def _run_filter(
    workflow: Workflow[Any, Any] | str | None,
    status: RunStatus | str | Sequence[RunStatus | str] | None,
    parent: str | None,
    order: str,
    waiting_for_version: bool,
    idempotency_key: str | None = None,
    recipe: str | None = None,
) -> RunFilter:
    """The store's filter, with every argument checked (InputValidationError naming the bad one)."""
    statuses = [] if status is None else [status] if isinstance(status, str) else list(status)
    known = [s.value for s in RunStatus]
    for one in statuses:
        if one not in known:
            raise InputValidationError(f"unknown status {one!r}: use one of {known}")
    if order not in RUN_ORDERS:
        raise InputValidationError(f"unknown order {order!r}: use one of {list(RUN_ORDERS)}")
    return RunFilter(
        workflow_id=workflow.id if isinstance(workflow, Workflow) else workflow,
        statuses=tuple(str(RunStatus(s).value) for s in statuses),
        waiting_for_version=waiting_for_version,
        parent_run_id=parent,
        order=order,
        idempotency_key=idempotency_key,
        recipe=recipe,
    )


def _encode_cursor(order: str, key: float, run_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([order, key, run_id]).encode()).decode()


def _decode_cursor(cursor: str, order: str) -> tuple[float, str]:
    """The keyset after which the next page starts; the cursor must come from a listing in the same order."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if len(decoded) == 2:  # a cursor from before orders existed: newest first by creation
            decoded = ["-created", *decoded]
        made_for, key, run_id = decoded
        key, run_id = float(key), str(run_id)
    except Exception as exc:
        raise InputValidationError("invalid cursor: pass back a next_cursor from list_runs") from exc
    if made_for != order or key != key:  # NaN never compares: refuse it
        raise InputValidationError(
            f"this cursor was made for order={made_for!r}, not {order!r}: list again with the order it came from"
        )
    return key, run_id
