"""Building workflows (``builder``) and the committed plan they become (``graph``)."""

from plait.workflow.builder import Builder, workflow
from plait.workflow.graph import ChildTask, Workflow

__all__ = ["Builder", "ChildTask", "Workflow", "workflow"]
