"""Payloads cross every boundary as JSON validated by Pydantic, never pickle.

JSON keeps stored data readable and queryable, and untrusted data can never
execute on load.
"""

from __future__ import annotations

import json
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from plait.errors import InputValidationError

T = TypeVar("T")

DEFAULT_MAX_PAYLOAD_BYTES = 8 * 1024 * 1024


class Codec(Generic[T]):
    """Validates and (de)serializes values of one type."""

    def __init__(self, type_: Any) -> None:
        self.type = type_
        self.adapter: TypeAdapter[T] = TypeAdapter(type_)

    def validate(self, value: Any) -> T:
        """Coerce ``value`` (a model, or the dict JSON gives back) to the type; raises ValidationError."""
        return self.adapter.validate_python(value)

    def dump(self, value: T) -> str:
        """JSON text of ``value``; raises PydanticSerializationError when it cannot be stored."""
        return self.adapter.dump_json(value).decode()

    def load(self, text: str) -> T:
        return self.adapter.validate_json(text)

    def schema(self) -> dict[str, Any]:
        """JSON schema of the type ({} when it has none, e.g. Any)."""
        try:
            return self.adapter.json_schema()
        except Exception:  # noqa: BLE001 - some types have no JSON schema; they still run.
            return {}


def validation_summary(exc: ValidationError) -> str:
    """Pydantic's errors on one line: ``age: Input should be a valid integer (got 'old')``."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "value"
        parts.append(f"{where}: {error['msg']} (got {error.get('input')!r:.60})")
    return "; ".join(parts)


def validate_input(codec: Codec[T], value: Any, what: str) -> T:
    """``value`` validated by ``codec``, or InputValidationError naming ``what`` with Pydantic's details."""
    try:
        return codec.validate(value)
    except ValidationError as exc:
        raise InputValidationError(
            f"{what} is invalid: {validation_summary(exc)}", errors=json.loads(exc.json(include_url=False))
        ) from exc


def dump_any(value: Any) -> str:
    """JSON text of a value of no declared type."""
    return ANY.dump(value)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (dicts, lists, str...)."""
    return to_jsonable_python(value)


def type_name(type_: Any) -> str:
    """A short readable name of a type for messages and graphs."""
    if type_ is Any:
        return "Any"
    name = getattr(type_, "__name__", None)
    if isinstance(name, str) and not getattr(type_, "__args__", None):
        return name
    return repr(type_).replace("typing.", "")


ANY: Codec[Any] = Codec(Any)

__all__ = [
    "ANY",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "Codec",
    "PydanticSerializationError",
    "ValidationError",
    "dump_any",
    "jsonable",
    "type_name",
    "validate_input",
    "validation_summary",
]
