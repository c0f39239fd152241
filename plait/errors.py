"""Every error plait raises, each with a stable ``code``.

::

    PlaitError
    ├── WorkflowDefinitionError   workflow.invalid
    ├── WorkflowNotFound          workflow.not_found
    ├── DuplicateWorkflow         workflow.duplicate
    ├── RunNotFound               run.not_found
    ├── InputValidationError      input.invalid
    ├── StepFailed                step.failed
    │   ├── StepTimeout           step.timeout
    │   └── StepOutputInvalid     step.output_invalid
    ├── EventTimeout              event.timeout
    ├── RunFailed                 run.failed
    ├── RunCancelled              run.cancelled
    ├── RunStateError             run.state
    ├── StoreUnavailable          store.unavailable
    ├── LeaseLost                 lease.lost
    ├── DocumentInvalid           document.invalid
    ├── PlanError                 plan.invalid
    │   └── NoRecipeMatched       plan.no_recipe
    └── IdempotencyConflict       run.idempotency_conflict

RunCancelledSignal (a BaseException) is internal: it unwinds a cancelled run.

The HTTP API and the CLI report the same codes.
"""

from __future__ import annotations

from typing import Any, ClassVar


class PlaitError(Exception):
    """Base of every plait error; ``code`` is stable and documented."""

    code: ClassVar[str] = "plait.error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{type(self).__name__} [{self.code}]: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """The structured form used in stored errors, the API and the CLI."""
        return {"code": self.code, "message": self.message}


class WorkflowDefinitionError(PlaitError):
    """A workflow or step is wired wrongly; raised before anything runs."""

    code = "workflow.invalid"

    def __init__(self, message: str, *, step_id: str | None = None) -> None:
        super().__init__(message)
        self.step_id = step_id


class WorkflowNotFound(PlaitError):
    """No workflow with that id (and version) is registered."""

    code = "workflow.not_found"


class DuplicateWorkflow(PlaitError):
    """A different workflow is already registered under the same id and version."""

    code = "workflow.duplicate"


class RunNotFound(PlaitError):
    """No run with that id exists in this engine's namespace."""

    code = "run.not_found"


class InputValidationError(PlaitError):
    """Input (of a run, an event or a resume) does not match its schema.

    ``errors`` holds Pydantic's error list so callers can point at the field.
    """

    code = "input.invalid"

    def __init__(self, message: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "details": self.errors}


class StepFailed(PlaitError):
    """A step attempt failed; carries the step id and the attempt number."""

    code = "step.failed"

    def __init__(self, message: str, *, step_id: str | None = None, attempt: int | None = None) -> None:
        super().__init__(message)
        self.step_id = step_id
        self.attempt = attempt


class StepTimeout(StepFailed):
    """A step attempt ran longer than its ``timeout`` and was cancelled."""

    code = "step.timeout"


class StepOutputInvalid(StepFailed):
    """A step returned a value that does not fit its output type, or cannot be stored."""

    code = "step.output_invalid"


class EventTimeout(PlaitError):
    """A run waited for an event longer than the wait's ``timeout``."""

    code = "event.timeout"


class RunFailed(PlaitError):
    """Raised by ``result()`` when the run failed; ``error`` is the stored error."""

    code = "run.failed"

    def __init__(self, message: str, *, run_id: str, error: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.error = error or {}


class RunCancelled(PlaitError):
    """Raised by ``result()`` when the run was cancelled."""

    code = "run.cancelled"

    def __init__(self, message: str, *, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class RunStateError(PlaitError):
    """The run is not in a state that allows this action (e.g. retrying a running run)."""

    code = "run.state"


class StoreUnavailable(PlaitError):
    """The database could not be reached or stayed locked; nothing was changed."""

    code = "store.unavailable"


class LeaseLost(PlaitError):
    """This worker no longer holds the run (its lease expired); its commit was refused."""

    code = "lease.lost"


class DocumentInvalid(PlaitError):
    """A workflow document (or a patch) has problems; ``problems`` lists each with its path.

    Each problem is ``{"path", "code", "reason", "hint"}``; codes are the patch
    skip codes (``unknown_type``, ``invalid_params``, ``cycle``, ...).
    """

    code = "document.invalid"

    def __init__(self, message: str, *, problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "details": self.problems}


class PlanError(PlaitError):
    """A recipe, a hint or a plan is wrong (unknown operator or step, duplicate recipe, refused skip).

    ``details`` says which recipe, condition or step, for the API and the CLI.
    """

    code = "plan.invalid"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "details": self.details}


class NoRecipeMatched(PlanError):
    """No recipe of the workflow holds on the input; ``details["candidates"]`` lists each with its failed conditions."""

    code = "plan.no_recipe"


class RunCancelledSignal(BaseException):
    """Internal: the run was cancelled while a step ran; its late result is discarded.

    A BaseException so that a step's ``except Exception`` cannot swallow it.
    """


class IdempotencyConflict(PlaitError):
    """An idempotency key or run id was reused for another workflow or another input.

    The existing run is neither returned nor changed; retry with the original
    request, or use a new key (or run id) for a new run.
    """

    code = "run.idempotency_conflict"
