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
    ├── WorkflowTimeout           run.timeout
    ├── RunFailed                 run.failed
    ├── RunCancelled              run.cancelled
    ├── RunStateError             run.state
    ├── StoreUnavailable          store.unavailable
    ├── LeaseLost                 lease.lost
    ├── DocumentInvalid           document.invalid
    ├── IdempotencyConflict       run.idempotency_conflict
    ├── BudgetExceeded            run.budget_exceeded
    ├── ResultTimeout             run.result_timeout   (also a TimeoutError)
    ├── InternalError             internal.error
    ├── ArtifactNotFound          artifact.not_found
    ├── ArtifactInvalid           artifact.invalid
    └── PlanError                 plan.invalid
        └── NoRecipeMatched       plan.no_recipe

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


class WorkflowTimeout(PlaitError):
    """A run went past its workflow's ``timeout`` (waiting included); it ends ``failed`` with this error."""

    code = "run.timeout"


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


class BudgetExceeded(PlaitError):
    """A run's recorded model usage reached its budget, so it started no further step.

    Raise it with ``engine.raise_budget(run_id, ...)`` and ``engine.retry(run_id)``.
    """

    code = "run.budget_exceeded"


class ArtifactNotFound(PlaitError):
    """The run has no artifact with that key (or its blob is gone)."""

    code = "artifact.not_found"


class ArtifactInvalid(PlaitError):
    """An artifact key or value cannot be stored: a bad key, data that is not bytes, text or JSON, no blob store."""

    code = "artifact.invalid"


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


class ResultTimeout(PlaitError, TimeoutError):
    """``result(timeout=...)`` ran out of time before the run ended; the run itself goes on.

    Also a ``TimeoutError``, so ``except TimeoutError`` keeps working. The
    message says why the run is not moving (for example no worker has its
    workflow version, or it sleeps until a time); ``status`` is its status then.
    """

    code = "run.result_timeout"

    def __init__(self, message: str, *, run_id: str, status: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status


class InternalError(PlaitError):
    """plait itself failed on a run again and again; the run was failed rather than retried forever.

    The stored error carries the traceback: please report it.
    """

    code = "internal.error"
