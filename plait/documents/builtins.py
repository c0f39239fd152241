"""The built-in block types: durable waits, like the builder's sleep, wait_for_event and approval."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from plait.documents.connectors import ParamField, classify_params
from plait.documents.schemas import schema_problem
from plait.documents.templates import whole_template


class WaitDuration(BaseModel):
    """Wait ``seconds``, or until ``until`` (an ISO 8601 time with a zone, or a template giving one)."""

    model_config = ConfigDict(extra="forbid")

    seconds: float | None = Field(default=None, ge=0)
    until: str | None = None


class WaitEvent(BaseModel):
    """Park until ``run.send_event(name, payload)``; the payload (checked against ``schema``) is the output.

    After ``timeout_seconds`` the run fails, unless ``default`` is given: then it is the output.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    timeout_seconds: float | None = Field(default=None, gt=0)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    default: Any = None


class WaitApproval(BaseModel):
    """Park until ``run.approve(block_id, data)`` or ``run.reject(block_id, reason)``.

    The output is ``{"approved", "data", "reason"}``; ``data`` is checked against ``schema``.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    timeout_seconds: float | None = Field(default=None, gt=0)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")


def _duration_problem(params: Mapping[str, Any]) -> tuple[str, str] | None:
    has_seconds, has_until = params.get("seconds") is not None, params.get("until") is not None
    if has_seconds == has_until:
        return "params", "give exactly one of 'seconds' or 'until'"
    until = params.get("until")
    if isinstance(until, str) and whole_template(until) is None and "{{" not in until:
        from datetime import datetime

        try:
            moment = datetime.fromisoformat(until)
        except ValueError:
            return "params.until", "'until' is an ISO 8601 time such as 2030-01-01T09:00:00+00:00"
        if moment.tzinfo is None:
            return "params.until", "'until' needs a time zone, e.g. +00:00"
    return None


def _schema_param_problem(params: Mapping[str, Any]) -> tuple[str, str] | None:
    schema = params.get("schema")
    if schema is None:
        return None
    found = schema_problem(schema)
    return None if found is None else (f"params.schema.{found[0]}".rstrip("."), found[1])


def _event_output(params: Mapping[str, Any]) -> dict[str, Any]:
    schema = params.get("schema")
    return dict(schema) if isinstance(schema, dict) else {}


def _approval_output(params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "approved": {"type": "boolean"},
            "data": _event_output(params),
            "reason": {"type": ["string", "null"]},
        },
    }


@dataclass(frozen=True)
class BuiltinType:
    """A block type plait provides: no connector code, the engine's own durable waits."""

    type: str
    description: str
    params_model: builtins.type[BaseModel]
    output_of: Callable[[Mapping[str, Any]], dict[str, Any]]
    extra_problem: Callable[[Mapping[str, Any]], tuple[str, str] | None]
    fields: Mapping[str, ParamField] = field(default_factory=dict)
    hidden: tuple[tuple[str, str], ...] = ()

    @property
    def hidden_keys(self) -> frozenset[str]:
        return frozenset()

    @property
    def user_only_keys(self) -> frozenset[str]:
        return frozenset()

    def params_schema(self) -> dict[str, Any]:
        return self.params_model.model_json_schema(by_alias=True)

    def output_schema(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.output_of(params or {})


def _builtin(
    type_: str,
    model: type[BaseModel],
    output_of: Callable[[Mapping[str, Any]], dict[str, Any]],
    extra: Callable[[Mapping[str, Any]], tuple[str, str] | None],
) -> BuiltinType:
    _, fields = classify_params(model)
    return BuiltinType(type_, (model.__doc__ or "").strip(), model, output_of, extra, fields)


BUILTINS: dict[str, BuiltinType] = {
    b.type: b
    for b in (
        _builtin("wait.duration", WaitDuration, lambda _: {"type": "null"}, _duration_problem),
        _builtin("wait.event", WaitEvent, _event_output, _schema_param_problem),
        _builtin("wait.approval", WaitApproval, _approval_output, _schema_param_problem),
    )
}
"""Built-in block types by name."""
