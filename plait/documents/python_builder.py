"""Write a document in typed Python: ``plait.document("id", input=Model).block(...).build()``.

The params functions receive a recorder: ``r.input.email`` and ``r.enrich.name``
stand for the references ``{{input.email}}`` and ``{{enrich.name}}`` (also inside
f-strings), so the document holds references, never values. A field the model
lacks is refused at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from plait.documents.builtins import BUILTINS
from plait.documents.connectors import Connector
from plait.documents.model import WorkflowDocument
from plait.documents.schemas import path_problem
from plait.errors import WorkflowDefinitionError

ParamsSpec = Mapping[str, Any] | Callable[["Recorder"], Mapping[str, Any]]


class Ref:
    """A reference being recorded: attribute access extends it; text formatting gives the template."""

    def __init__(self, root: str, path: tuple[str, ...], schema: dict[str, Any] | None) -> None:
        self._root, self._path, self._schema = root, path, schema

    def __getattr__(self, name: str) -> Ref:
        if name.startswith("__"):
            raise AttributeError(name)
        path = (*self._path, name)
        if self._schema is not None:
            missing = path_problem(self._schema, path)
            if missing:
                raise WorkflowDefinitionError(
                    f"document reference {self._root}.{'.'.join(path)}: '{self._root}' has no field {missing}"
                )
        return Ref(self._root, path, self._schema)

    def __getitem__(self, index: int | str) -> Ref:
        return self.__getattr__(str(index))

    @property
    def template(self) -> str:
        return "{{" + ".".join((self._root, *self._path)) + "}}"

    def __str__(self) -> str:
        return self.template

    def __format__(self, spec: str) -> str:
        return self.template


class Recorder:
    """What a params function receives: ``r.input``, ``r.vars``, ``r.env`` and one attribute per earlier block."""

    def __init__(self, schemas: Mapping[str, dict[str, Any] | None]) -> None:
        self._schemas = schemas

    def __getattr__(self, name: str) -> Ref:
        if name.startswith("__"):
            raise AttributeError(name)
        if name not in self._schemas:
            known = ", ".join(self._schemas)
            raise WorkflowDefinitionError(f"document reference to '{name}': no such block before this one ({known})")
        return Ref(name, (), self._schemas[name])


def _templated(value: Any) -> Any:
    if isinstance(value, Ref):
        return value.template
    if isinstance(value, BaseModel):
        return _templated(value.model_dump(mode="json"))
    if isinstance(value, Mapping):
        return {str(k): _templated(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_templated(v) for v in value]
    return value


class DocumentBuilder:
    """Builds a ``WorkflowDocument`` block by block (each call returns a new builder)."""

    def __init__(
        self,
        id: str,
        *,
        input_schema: dict[str, Any],
        description: str = "",
        blocks: tuple[dict[str, Any], ...] = (),
        variables: Mapping[str, Any] | None = None,
        output: Any = None,
        schemas: Mapping[str, dict[str, Any] | None] | None = None,
    ) -> None:
        self._id = id
        self._input = input_schema
        self._description = description
        self._blocks = blocks
        self._vars = dict(variables or {})
        self._output = output
        self._schemas: dict[str, dict[str, Any] | None] = dict(
            schemas or {"input": input_schema or None, "vars": None, "env": None}
        )

    def _copy(self, **changes: Any) -> DocumentBuilder:
        state: dict[str, Any] = {
            "input_schema": self._input,
            "description": self._description,
            "blocks": self._blocks,
            "variables": self._vars,
            "output": self._output,
            "schemas": self._schemas,
        }
        state.update(changes)
        return DocumentBuilder(self._id, **state)

    def _params(self, spec: ParamsSpec | None) -> Any:
        if spec is None:
            return {}
        raw = spec(Recorder(self._schemas)) if callable(spec) else spec
        return _templated(raw)

    def block(
        self,
        id: str,
        connector: Connector[Any, Any] | str,
        params: ParamsSpec | None = None,
        *,
        after: tuple[str, ...] | list[str] = (),
        when: Mapping[str, Any] | None = None,
        disabled: bool = False,
    ) -> DocumentBuilder:
        """Add a block using ``connector`` (or a built-in type name such as ``"wait.duration"``)."""
        if isinstance(connector, Connector):
            type_name, output_schema = connector.type, connector.output_schema()
        elif isinstance(connector, str) and connector in BUILTINS:
            type_name = connector
            output_schema = BUILTINS[connector].output_schema(params if isinstance(params, Mapping) else {})
        else:
            raise WorkflowDefinitionError(
                f"document block '{id}': give a connector (made with @plait.connector) or a built-in type name"
            )
        block: dict[str, Any] = {"id": id, "type": type_name, "params": self._params(params), "after": list(after)}
        if when is not None:
            block["when"] = _templated(dict(when))
        if disabled:
            block["disabled"] = True
        return self._copy(blocks=(*self._blocks, block), schemas={**self._schemas, id: output_schema or None})

    def vars(self, **values: Any) -> DocumentBuilder:
        """Set document variables (read as ``{{vars.name}}``)."""
        return self._copy(variables={**self._vars, **values})

    def output(self, value: ParamsSpec | Any) -> DocumentBuilder:
        """The run's output: a value, or a function of the recorder."""
        raw = value(Recorder(self._schemas)) if callable(value) else value
        return self._copy(output=_templated(raw))

    def build(self) -> WorkflowDocument:
        """The document (compile it with ``registry.compile`` or ``engine.register``)."""
        return WorkflowDocument.parse(
            {
                "id": self._id,
                "description": self._description,
                "input": self._input,
                "vars": self._vars,
                "blocks": list(self._blocks),
                "output": self._output,
            }
        )


def document(id: str, *, input: type[BaseModel] | None = None, description: str = "") -> DocumentBuilder:
    """Start writing a document in Python; ``input`` is the run input's model (its JSON Schema is stored)."""
    schema = input.model_json_schema() if input is not None else {}
    return DocumentBuilder(id, input_schema=schema, description=description)
