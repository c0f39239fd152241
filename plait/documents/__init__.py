"""Workflow documents: connectors, JSON documents of blocks, templates and validated patch operations.

The engine reads this package (``engine.register(connector | document)``,
stored document versions); nothing here imports the engine.
"""

from plait.documents.conditions import OPERATORS, evaluate
from plait.documents.connectors import Connector, Hidden, UserOnly, connector
from plait.documents.model import Block, Condition, WorkflowDocument
from plait.documents.ops import PatchResult, SkippedOp, apply_ops
from plait.documents.problems import Problem
from plait.documents.python_builder import DocumentBuilder, document
from plait.documents.registry import Registry
from plait.documents.secrets import SecretSource

__all__ = [
    "OPERATORS",
    "Block",
    "Condition",
    "Connector",
    "DocumentBuilder",
    "Hidden",
    "PatchResult",
    "Problem",
    "Registry",
    "SecretSource",
    "SkippedOp",
    "UserOnly",
    "WorkflowDocument",
    "apply_ops",
    "connector",
    "document",
    "evaluate",
]
