"""The step context: what a running step knows about its run."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from plait.artifacts.step import StepArtifacts
from plait.errors import RunStateError
from plait.payloads import jsonable
from plait.run_log import RESERVED_PREFIXES
from plait.waiting import SuspendRequest

if TYPE_CHECKING:
    from plait.executor import RunExecution
    from plait.steps import Step

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

    def suspend(self, payload: Any = None) -> NoReturn:
        """Park the run (status ``suspended``) until ``run.resume(step_id, data)``.

        ``payload`` (JSON-able) tells whoever resumes what is needed. The step
        then runs again from the top with ``ctx.resume_data`` set to the data.
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
        *,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost: float | None = None,
    ) -> None:
        """Record an LLM call's usage as a ``step.usage`` event (model, tokens, cost) for reports and alerts."""
        usage = {"model": model, "input_tokens": input_tokens, "output_tokens": output_tokens, "cost": cost}
        self._add("step.usage", usage)

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


class StepLogger:
    """``ctx.log``: info/warning/error/debug lines persisted with the step and sent to ``logging``."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def _line(self, level: int, message: str, *args: object) -> None:
        text = message % args if args else message
        _logger.log(level, "[run %s step %s] %s", self._ctx.run_id, self._ctx.step_id, text)
        if level >= logging.INFO:
            self._ctx._add("step.log", {"level": logging.getLevelName(level).lower(), "message": text})

    def debug(self, message: str, *args: object) -> None:
        """Sent to ``logging`` only; not kept in the run's events."""
        self._line(logging.DEBUG, message, *args)

    def info(self, message: str, *args: object) -> None:
        self._line(logging.INFO, message, *args)

    def warning(self, message: str, *args: object) -> None:
        self._line(logging.WARNING, message, *args)

    def error(self, message: str, *args: object) -> None:
        self._line(logging.ERROR, message, *args)
