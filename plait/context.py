"""The step context: what a running step knows about its run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, overload

from plait.artifacts.step import StepArtifacts
from plait.errors import RunStateError
from plait.payloads import jsonable
from plait.run_log import RESERVED_PREFIXES
from plait.usage.models import nanos_to_cost
from plait.waiting import SuspendRequest

if TYPE_CHECKING:
    from plait.executor import RunExecution
    from plait.runs import RunHandle
    from plait.steps import Step
    from plait.usage.models import Budget
    from plait.workflow.graph import Workflow

I = TypeVar("I")  # noqa: E741 - reads as "input"
O = TypeVar("O")  # noqa: E741 - reads as "output"

_logger = logging.getLogger("plait.step")


class Context:
    """Passed as the first parameter of a step that takes ``(ctx, value)``."""

    def __init__(self, execution: RunExecution, step_id: str, step_key: str, attempt: int) -> None:
        self._execution = execution
        self.step_id = step_id
        self.step_key = step_key
        self.attempt = attempt
        self._cancelled = False
        self.resume_data: Any = None
        """The data passed to ``run.resume`` when this attempt continues a suspension, else None."""

    @property
    def log(self) -> StepLogger:
        """Log lines kept with the run (per step and attempt) and forwarded to stdlib ``logging``."""
        return StepLogger(self)

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far this step is (0..1); shows in the run's events within about 0.2 s."""
        if not 0 <= fraction <= 1:
            raise ValueError("progress fraction must be between 0 and 1")
        self._add("step.progress", {"fraction": fraction, "message": message})

    def emit(self, type: str, payload: Any = None) -> None:
        """Add a custom event to the run's log (``type`` like "invoice.sent"; payload JSON-able)."""
        if not type or type.startswith(RESERVED_PREFIXES):
            raise ValueError(f"custom event types must not be empty or start with {', '.join(RESERVED_PREFIXES)}")
        self._add(type, {"data": jsonable(payload)})

    def _add(self, type_: str, payload: dict[str, Any]) -> None:
        self._execution.log.add(self.step_key, self.step_id, self.attempt, type_, payload)

    @property
    def run_id(self) -> str:
        return self._execution.run_id

    @property
    def workflow_input(self) -> Any:
        """The run's validated input."""
        return self._execution.workflow_input

    @property
    def idempotency_key(self) -> str:
        """Stable across retries and re-runs of this step in this run: pass it to external APIs.

        A step that was running when its worker died runs again; a payment or an
        email keyed by this value is then made only once by the receiving system.
        """
        return f"{self.run_id}:{self.step_key}"

    @property
    def cancelled(self) -> bool:
        """True once the run was cancelled or this attempt timed out: stop work and return."""
        return self._cancelled or self._execution.cancelled

    def result_of(self, step: Step[Any, O]) -> O:
        """The committed output of an earlier ``step`` of this run."""
        if step.id not in self._execution.outputs_by_step:
            raise RunStateError(
                f"step '{step.id}' has no result yet in run {self.run_id}: "
                "result_of only reads steps that completed before this one"
            )
        value: O = step.output_codec.load(self._execution.outputs_by_step[step.id])
        return value

    def result_or_none(self, step: Step[Any, O]) -> O | None:
        """Like ``result_of``, but None when ``step`` has no result in this run (not run yet, skipped past, failed)."""
        if step.id not in self._execution.outputs_by_step:
            return None
        return self.result_of(step)

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata the run was started with (``engine.start(..., metadata=...)``); {} when none."""
        text = self._execution.run.metadata
        value = json.loads(text) if text else {}
        return dict(value) if isinstance(value, dict) else {}

    @overload
    def start_child(
        self, workflow: Workflow[I, O], input: I | Mapping[str, Any], *, key: str | None = None
    ) -> RunHandle[O]: ...
    @overload
    def start_child(self, workflow: str, input: Any, *, key: str | None = None) -> RunHandle[Any]: ...
    def start_child(self, workflow: Workflow[Any, Any] | str, input: Any, *, key: str | None = None) -> RunHandle[Any]:
        """Start a child run of ``workflow`` from this step and return its handle; the step goes on at once.

        The child is linked to this run (``engine.list_runs(parent=run_id)``,
        cancelled with it) and is started once per step and ``key``, however
        often this step is retried or re-run after a crash: a second call with
        the same ``key`` returns the same run. Give each child its own ``key``
        to start several. In an async step use ``await ctx.astart_child(...)``.
        """
        execution = self._execution
        if _on_loop(execution.loop):
            raise RunStateError("ctx.start_child blocks; in an async step use await ctx.astart_child(...)")
        coro = execution.host.start_child(execution.run, self.step_key, workflow, input, key)
        handle: RunHandle[Any] = asyncio.run_coroutine_threadsafe(coro, execution.loop).result()
        return handle

    @overload
    async def astart_child(
        self, workflow: Workflow[I, O], input: I | Mapping[str, Any], *, key: str | None = None
    ) -> RunHandle[O]: ...
    @overload
    async def astart_child(self, workflow: str, input: Any, *, key: str | None = None) -> RunHandle[Any]: ...
    async def astart_child(
        self, workflow: Workflow[Any, Any] | str, input: Any, *, key: str | None = None
    ) -> RunHandle[Any]:
        """Async twin of ``start_child``."""
        execution = self._execution
        coro = execution.host.start_child(execution.run, self.step_key, workflow, input, key)
        if _on_loop(execution.loop):
            handle: RunHandle[Any] = await coro
            return handle
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, execution.loop))

    def suspend(self, payload: Any = None) -> NoReturn:
        """Park the run (status ``suspended``) until ``run.resume(step_id, reply)``.

        ``payload`` (JSON-able) tells whoever resumes what is needed. The step
        then runs again from the top with ``ctx.resume_data`` set to the reply.
        """
        raise SuspendRequest(payload)

    @property
    def state(self) -> dict[str, Any]:
        """The workflow's shared state: what steps of this run stored with ``set_state``."""
        return dict(self._execution.state)

    def set_state(self, values: dict[str, Any] | None = None, **more: Any) -> None:
        """Merge values (JSON-able) into the workflow's state.

        The change is saved with this step's result: if the step runs again
        after a crash, so does its change, and later steps see it once.
        """
        if not self._execution.log_enabled:
            raise RunStateError("workflow state is kept in the event log: use Engine(events=True) to use set_state")
        update = jsonable({**(values or {}), **more})
        self._execution.state.update(update)
        self._add("state.set", {"values": update})

    def record_usage(
        self,
        result: Any = None,
        /,
        *,
        model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cache_read_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        provider: str | None = None,
        cost: float | None = None,
        prompt: Any = None,
        response: Any = None,
    ) -> None:
        """Record a model call's usage: pass the client's response (or its ``usage``), or use the keywords.

        OpenAI (Chat Completions, Responses), Anthropic and pydantic-ai results
        are read for model, provider and tokens (keywords given override
        them). ``input_tokens`` include cached input. ``cost`` (USD) is
        computed from the price table when not given. The record is written
        with this attempt's commit and counts towards the run's budget;
        ``prompt``/``response`` are kept only with ``Engine(store_prompts=True)``.
        """
        tokens = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_tokens": cache_read_tokens,
            "cache_write_tokens": cache_write_tokens,
            "reasoning_tokens": reasoning_tokens,
        }
        execution = self._execution
        records = execution.usage.record(
            self.step_id,
            self.step_key,
            self.attempt,
            execution.host.clock.now().timestamp(),
            result,
            model=model,
            provider=provider,
            cost=cost,
            prompt=prompt,
            response=response,
            tokens=tokens,
        )
        if execution.log_enabled:
            for record in records:
                cost_usd = nanos_to_cost(record.cost_nanos)
                self._add(
                    "step.usage",
                    {
                        "model": record.model,
                        "input_tokens": record.input_tokens,
                        "output_tokens": record.output_tokens,
                        "cost": cost_usd,
                    },
                )

    @property
    def budget_left(self) -> Budget | None:
        """What remains of the run's budget (counting calls recorded so far), or None without one.

        A step can check it to skip an expensive call.
        """
        return self._execution.usage.left()

    @property
    def config(self) -> Any:
        """This step's settings: an instance of its ``@plait.step(config=Model)``, with the run's values.

        Values come from ``engine.start(..., config={step_id: {...}})``, the
        model's defaults fill the rest. Raises RunStateError when the step declares no config.
        """
        return self._execution.configs.for_step(self.step_id)

    @property
    def artifacts(self) -> StepArtifacts:
        """Named data kept with the run: ``put(key, data)`` here, ``get(key)`` in any later step."""
        return StepArtifacts(self)

    def mark_cancelled(self) -> None:
        self._cancelled = True


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class StepLogger:
    """``ctx.log``: info/warning/error/debug lines persisted with the step and sent to ``logging``.

    ``ctx.log.info("charged %s", amount, customer=42)``: ``%`` arguments format
    the message, keyword fields are kept with the line in its event. A log call
    never raises: arguments that do not format are appended as text, a single
    dict argument is taken as fields, values that are not JSON are stored as text.
    """

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def _line(self, level: int, message: object, args: tuple[object, ...], fields: dict[str, Any]) -> None:
        try:
            text, fields = _format(message, args, fields)
            stored = _plain_fields(fields)
            suffix = f" {json.dumps(stored, default=str)}" if stored else ""
            _logger.log(level, "[run %s step %s] %s%s", self._ctx.run_id, self._ctx.step_id, text, suffix)
            if level >= logging.INFO:
                payload: dict[str, Any] = {"level": logging.getLevelName(level).lower(), "message": text}
                if stored:
                    payload["fields"] = stored
                self._ctx._add("step.log", payload)
        except Exception:
            _logger.exception(
                "plait: could not record a log line of run %s step %s", self._ctx.run_id, self._ctx.step_id
            )

    def debug(self, message: object, *args: object, **fields: Any) -> None:
        """Sent to ``logging`` only; not kept in the run's events."""
        self._line(logging.DEBUG, message, args, fields)

    def info(self, message: object, *args: object, **fields: Any) -> None:
        self._line(logging.INFO, message, args, fields)

    def warning(self, message: object, *args: object, **fields: Any) -> None:
        self._line(logging.WARNING, message, args, fields)

    def error(self, message: object, *args: object, **fields: Any) -> None:
        self._line(logging.ERROR, message, args, fields)


def _format(message: object, args: tuple[object, ...], fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The line's text and its fields, from whatever a step passed."""
    text = message if isinstance(message, str) else _text(message)
    if len(args) == 1 and isinstance(args[0], Mapping):
        mapping = args[0]
        # A lone dict is data: fields, and %(name)s values if the message uses them.
        merged = {str(k): v for k, v in mapping.items()}
        with contextlib.suppress(Exception):  # an odd format keeps the raw message
            text = text % mapping if "%(" in text else text
        return text, {**merged, **fields}
    if args:
        try:
            text = text % args
        except Exception:  # noqa: BLE001 - arguments that do not fit the message are appended as text
            text = " ".join([text, *(_text(arg) for arg in args)])
    return text, fields


def _text(value: object) -> str:
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - a value whose __str__ fails
        return f"<unprintable {type(value).__name__}>"


def _plain_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Fields as JSON values; a value that is not JSON-able is kept as its text."""
    plain: dict[str, Any] = {}
    for name, value in fields.items():
        try:
            converted = jsonable(value)
            json.dumps(converted)
            plain[str(name)] = converted
        except Exception:  # noqa: BLE001 - stored as text rather than failing the step
            plain[str(name)] = _text(value)
    return plain
