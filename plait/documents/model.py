"""The workflow document: plain JSON that people and LLMs edit, validated before it runs."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from plait.documents.problems import Problem, document_invalid, path_of

ConditionOp = Literal["eq", "neq", "gt", "gte", "lt", "lte", "contains", "matches", "exists", "not_exists"]

BLOCK_ID: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
"""Block ids: they appear in templates (``{{enrich.name}}``), so no dots; at most 64 characters."""
DOCUMENT_ID: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")
RESERVED_IDS: Final = frozenset({"input", "vars", "env", "output"})

MAX_DOCUMENT_BYTES: Final = 1_000_000
MAX_BLOCKS: Final = 1_000
MAX_OPS: Final = 500


class Condition(BaseModel):
    """``when``: the block runs only if ``ref <op> value`` holds, else it is skipped."""

    model_config = ConfigDict(extra="forbid")

    ref: str = Field(description='A template, e.g. "{{enrich.score}}"')
    op: ConditionOp
    value: Any = None


class Block(BaseModel):
    """One step of a document: a connector (or built-in wait) with its params."""

    model_config = ConfigDict(extra="forbid")

    id: str
    type: str
    params: dict[str, Any] = Field(default_factory=dict)
    after: list[str] = Field(default_factory=list, description="Blocks that must be done first")
    when: Condition | None = None
    disabled: bool = False


class WorkflowDocument(BaseModel):
    """A workflow as data: blocks of connectors wired by templates and ``after`` edges.

    Compile it with ``registry.compile(doc)`` or ``engine.register(doc)``; edit it
    with ``plait.apply_ops``. Plain JSON on the wire (``model_dump(mode="json")``).
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    description: str = ""
    input: dict[str, Any] = Field(default_factory=dict, description="JSON Schema of the run input")
    vars: dict[str, Any] = Field(default_factory=dict)
    blocks: list[Block] = Field(default_factory=list)
    output: Any = None

    @classmethod
    def parse(cls, data: Any) -> WorkflowDocument:
        """A document from JSON text, bytes or parsed data; raises DocumentInvalid listing every problem."""
        if isinstance(data, WorkflowDocument):
            return data
        if isinstance(data, str | bytes):
            if len(data) > MAX_DOCUMENT_BYTES:
                raise document_invalid([too_large_problem(len(data))])
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise document_invalid([Problem("", "malformed_document", f"not valid JSON: {exc}")]) from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise document_invalid(
                [
                    Problem(path_of(err["loc"]), "malformed_document", err["msg"])
                    for err in exc.errors(include_url=False, include_input=False)
                ]
            ) from None

    def to_data(self) -> dict[str, Any]:
        """The document as plain JSON data."""
        return self.model_dump(mode="json")

    def content_hash(self) -> str:
        """A hash of the document's content: the version of the workflow it compiles to."""
        text = json.dumps(self.to_data(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def block(self, block_id: str) -> Block | None:
        """The block with that id, if any."""
        return next((b for b in self.blocks if b.id == block_id), None)


def too_large_problem(size: int) -> Problem:
    return Problem(
        "",
        "too_large",
        f"the document is {size} bytes of JSON, over the {MAX_DOCUMENT_BYTES}-byte limit",
        "split the workflow into smaller documents or keep large data outside it",
    )


def short(value: object, limit: int = 40) -> str:
    """``repr`` of user data cut to ``limit`` characters: errors never echo a 10 KB id."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
