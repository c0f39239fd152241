"""The step context: what a running step knows about its run."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from plait.errors import RunStateError
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
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger that tags lines with the run and step."""
        return logging.LoggerAdapter(_logger, {"run_id": self.run_id, "step_id": self.step_id})

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

    def mark_cancelled(self) -> None:
        self._cancelled = True
