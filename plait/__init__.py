"""plait: typed, durable workflows for Python, on SQLite or PostgreSQL."""

from plait.artifacts import Artifact
from plait.clock import Clock, SystemClock
from plait.context import Context
from plait.engine import Engine
from plait.errors import (
    ArtifactInvalid,
    ArtifactNotFound,
    DuplicateWorkflow,
    EventTimeout,
    InputValidationError,
    LeaseLost,
    PlaitError,
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
from plait.specs import Spec, spec
from plait.step_config import AIConfig
from plait.steps import Retry, Step, approval, create_step, step
from plait.subscriptions import Subscription
from plait.waiting import Approval, Poll
from plait.webhooks import DeadLetter, Webhook
from plait.workflow import Builder, ChildTask, Workflow, workflow

__version__ = "0.1.0"

__all__ = [
    "AIConfig",
    "Approval",
    "Artifact",
    "ArtifactInvalid",
    "ArtifactNotFound",
    "Builder",
    "ChildTask",
    "Clock",
    "Context",
    "DeadLetter",
    "DuplicateWorkflow",
    "Engine",
    "Event",
    "EventPage",
    "EventTimeout",
    "HookInfo",
    "Hooks",
    "InputValidationError",
    "LeaseLost",
    "Page",
    "PlaitError",
    "Poll",
    "Queue",
    "Retry",
    "Run",
    "RunCancelled",
    "RunFailed",
    "RunHandle",
    "RunNotFound",
    "RunStateError",
    "RunStatus",
    "Spec",
    "Step",
    "StepFailed",
    "StepOutputInvalid",
    "StepRecord",
    "StepTimeout",
    "StoreUnavailable",
    "Subscription",
    "SystemClock",
    "Webhook",
    "Workflow",
    "WorkflowDefinitionError",
    "WorkflowNotFound",
    "__version__",
    "approval",
    "create_step",
    "spec",
    "step",
    "workflow",
]
