"""The registry: the connectors (and built-in block types) documents may use."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from plait.documents.builtins import BUILTINS
from plait.documents.catalog import describe_registry, tools_for
from plait.documents.compile import Compiler
from plait.documents.connectors import Connector
from plait.documents.model import WorkflowDocument
from plait.documents.problems import Problem
from plait.documents.validation import BlockType, Checker, DocumentView
from plait.errors import WorkflowDefinitionError
from plait.workflow.graph import Workflow

EnvAllowList = Mapping[str, str] | Iterable[str]


class Registry:
    """Connectors by type, plus the built-in wait blocks; compiles and describes documents.

    ``env`` allows ``{{env.NAME}}`` templates: a mapping gives the values, a
    list of names reads them from the environment when a block runs.
    """

    def __init__(self, *connectors: Connector[Any, Any], env: EnvAllowList | None = None) -> None:
        self._connectors: dict[str, Connector[Any, Any]] = {}
        self._env_values: Mapping[str, str] | None = None
        self._env_names: frozenset[str] = frozenset()
        self.set_env(env)
        self.add(*connectors)

    def add(self, *connectors: Connector[Any, Any]) -> None:
        """Register connectors; a second connector with the same type replaces nothing: it is an error."""
        for item in connectors:
            if not isinstance(item, Connector):
                raise WorkflowDefinitionError(f"Registry takes connectors (made with @plait.connector), got {item!r}")
            if item.type in BUILTINS:
                raise WorkflowDefinitionError(f"connector type '{item.type}' is a built-in block type; rename it")
            known = self._connectors.get(item.type)
            if known is not None and known.call is not item.call:
                raise WorkflowDefinitionError(f"two connectors have type '{item.type}': give each its own type=...")
            self._connectors[item.type] = item

    def set_env(self, env: EnvAllowList | None) -> None:
        """Which ``{{env.NAME}}`` names documents may read (and their values, when a mapping)."""
        if env is None:
            self._env_values, self._env_names = None, frozenset()
        elif isinstance(env, Mapping):
            self._env_values, self._env_names = dict(env), frozenset(env)
        else:
            self._env_values, self._env_names = None, frozenset(env)

    @property
    def env_names(self) -> frozenset[str]:
        return self._env_names

    @property
    def connectors(self) -> list[Connector[Any, Any]]:
        return list(self._connectors.values())

    def block_type(self, name: str) -> BlockType | None:
        """The connector or built-in type called ``name``."""
        if not isinstance(name, str):
            return None
        return self._connectors.get(name) or BUILTINS.get(name)

    def type_names(self) -> list[str]:
        return [*self._connectors, *BUILTINS]

    def validate(self, document: WorkflowDocument | Mapping[str, Any] | str) -> list[Problem]:
        """Every problem of ``document`` (empty when it compiles)."""
        doc = WorkflowDocument.parse(document)
        data = doc.to_data()
        return Checker(self).check_document(DocumentView(data), data["blocks"])

    def compile(self, document: WorkflowDocument | Mapping[str, Any] | str) -> Workflow[Any, Any]:
        """The document as a runnable workflow; raises DocumentInvalid listing every problem with its path."""
        return Compiler(self, self._env_values).compile(document)

    def describe(self) -> dict[str, Any]:
        """The catalog an LLM reads: connectors (no hidden params), built-in blocks, operators and ops."""
        return describe_registry(self)

    def llm_tools(self, format: Literal["openai", "anthropic"] = "openai") -> list[dict[str, Any]]:
        """Tool definitions for ``apply_ops``, ready to pass to a chat API."""
        return tools_for(self, format)
