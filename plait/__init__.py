"""plait: typed, durable workflows for Python, on SQLite or PostgreSQL."""

from plait.clock import Clock, SystemClock
from plait.context import Context
from plait.documents import (
    Connector,
    Hidden,
    PatchResult,
    Registry,
    SkippedOp,
    UserOnly,
    WorkflowDocument,
    apply_ops,
    connector,
    document,
)
from plait.engine import Engine
from plait.engine_documents import DocumentVersion
from plait.errors import (
    DocumentInvalid,
    DuplicateWorkflow,
    EventTimeout,
    InputValidationError,
    LeaseLost,
    PlaitError,
    ResultTimeout,
    RunCancelled,
    RunFailed,
    RunNotFound,
    RunStateError,
    StepFailed,
    StepOutputInvalid,
    StepTimeout,
    StoreUnavailable,
    WorkflowDefinitionError,
    WorkflowNotFound,
)
from plait.hooks import HookInfo, Hooks
from plait.queues import Queue
from plait.runs import Event, EventPage, Page, Run, RunHandle, RunStatus, StepRecord
from plait.steps import Retry, Step, approval, create_step, step
from plait.subscriptions import Subscription
from plait.waiting import Approval, Poll
from plait.webhooks import DeadLetter, Webhook
from plait.workflow import Builder, ChildTask, Workflow, workflow

__version__ = "0.1.0"

__all__ = [
    "Approval",
    "Builder",
    "ChildTask",
    "Clock",
    "Connector",
    "Context",
    "DeadLetter",
    "DocumentInvalid",
    "DocumentVersion",
    "DuplicateWorkflow",
    "Engine",
    "Event",
    "EventPage",
    "EventTimeout",
    "Hidden",
    "HookInfo",
    "Hooks",
    "InputValidationError",
    "LeaseLost",
    "Page",
    "PatchResult",
    "PlaitError",
    "Poll",
    "Queue",
    "Registry",
    "ResultTimeout",
    "Retry",
    "Run",
    "RunCancelled",
    "RunFailed",
    "RunHandle",
    "RunNotFound",
    "RunStateError",
    "RunStatus",
    "SkippedOp",
    "Step",
    "StepFailed",
    "StepOutputInvalid",
    "StepRecord",
    "StepTimeout",
    "StoreUnavailable",
    "Subscription",
    "SystemClock",
    "UserOnly",
    "Webhook",
    "Workflow",
    "WorkflowDefinitionError",
    "WorkflowDocument",
    "WorkflowNotFound",
    "__version__",
    "apply_ops",
    "approval",
    "connector",
    "create_step",
    "document",
    "step",
    "workflow",
]
