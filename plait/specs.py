"""Specs: a workflow's id, version and types without its code.

A client process (an API front end, ``Engine(worker=False)``) starts runs of
a spec, validated against ``spec.input``, and reads typed results; the
workers that have the code implement it with ``plait.workflow(spec)``, which
takes the id, types and version from the spec, so their runs are the ones
the client started.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Generic, TypeVar

from plait.errors import WorkflowDefinitionError
from plait.ids import is_valid_id
from plait.payloads import Codec

In_contra = TypeVar("In_contra", contravariant=True)
Out_co = TypeVar("Out_co", covariant=True)
I = TypeVar("I")  # noqa: E741 - reads as "input" in signatures
O = TypeVar("O")  # noqa: E741 - reads as "output" in signatures


class Spec(Generic[In_contra, Out_co]):
    """The contract of a workflow: ``id``, ``version``, input and output types; it holds no code."""

    def __init__(self, id: str, *, input: Any, output: Any, version: str | None = None, description: str = "") -> None:
        if not is_valid_id(id):
            raise WorkflowDefinitionError(
                f"spec id {id!r} is not valid: use letters, digits, '_', '-' or '.', starting with a letter or '_'"
            )
        if version is not None and (not version or "@" in version or len(version) > 128 or "\x00" in version):
            raise WorkflowDefinitionError(f"spec '{id}': version {version!r} must be 1-128 characters without '@'")
        self.id = id
        self.description = description
        self.input_codec: Codec[Any] = Codec(input)
        self.output_codec: Codec[Any] = Codec(output)
        self.version = version or _schema_hash(id, self.input_codec, self.output_codec)

    @property
    def ref(self) -> str:
        """``id@version``, the name ``engine.start`` also accepts."""
        return f"{self.id}@{self.version}"

    @property
    def input_type(self) -> Any:
        return self.input_codec.type

    @property
    def output_type(self) -> Any:
        return self.output_codec.type

    def __repr__(self) -> str:
        return f"Spec({self.ref!r})"


def spec(id: str, *, input: type[I], output: type[O], version: str | None = None, description: str = "") -> Spec[I, O]:
    """Declare a workflow's contract: ``plait.spec("send-email", input=SendEmail, output=Delivered, version="1")``.

    Start runs of it from any engine (``engine.start(spec, input)``); implement
    it on workers with ``plait.workflow(spec).then(...).commit()``. Without
    ``version`` the version is a hash of the id and both types' schemas.
    """
    return Spec(id, input=input, output=output, version=version, description=description)


def _schema_hash(id: str, input_codec: Codec[Any], output_codec: Codec[Any]) -> str:
    shape = {"spec": id, "input": input_codec.schema(), "output": output_codec.schema()}
    return hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()[:16]
