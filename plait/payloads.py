"""Payloads cross every boundary as JSON validated by Pydantic, never pickle.

JSON keeps stored data readable and queryable, and untrusted data can never
execute on load.
"""

from __future__ import annotations

import json
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, from_json, to_jsonable_python

from plait.errors import InputValidationError

T = TypeVar("T")

DEFAULT_MAX_PAYLOAD_BYTES = 8 * 1024 * 1024

# A stored value is checked as if wrapped this many levels deep: events, API answers and webhook bodies
# carry it inside a few objects, and every reader must still decode it (Pydantic's reader stops at 201 levels).
_HEADROOM = 10
# JSON text shorter than this always reads back: an integer readers refuse has over 4,300 digits, and
# nesting they refuse (over 201 - _HEADROOM levels) takes more brackets than this.
_SHORT_JSON = 2 * (201 - _HEADROOM)

# Stored JSON that cannot be decoded is shown as this marker instead of failing the whole read.
UNREADABLE_KEY = "$unreadable"
# How the message of a value that cannot be stored begins.
UNSTORABLE = "the value cannot be stored as JSON:"


class Codec(Generic[T]):
    """Validates and (de)serializes values of one type."""

    def __init__(self, type_: Any) -> None:
        self.type = type_
        self.adapter: TypeAdapter[T] = TypeAdapter(type_)
        self._may_hold_floats: bool | None = None

    def validate(self, value: Any) -> T:
        """Coerce ``value`` (a model, or the dict JSON gives back) to the type; raises ValidationError."""
        return self.adapter.validate_python(value)

    def dump(self, value: T) -> str:
        """JSON text of ``value`` that reads back exactly.

        Raises InputValidationError when it cannot: a value JSON cannot hold
        (NaN, infinity, a lone surrogate, an unknown type), an integer over
        4,300 digits, or nesting deeper than readers accept.
        """
        try:
            text = self.adapter.dump_json(value).decode()
        except PydanticSerializationError as exc:
            raise _unstorable(f"Pydantic cannot write it ({exc})") from exc
        except (ValueError, RecursionError) as exc:
            raise _unstorable(f"Pydantic cannot write it ({type(exc).__name__}: {exc})") from exc
        if len(text) > _SHORT_JSON or "NaN" in text or "Infinity" in text:
            try:
                from_json("[" * _HEADROOM + text + "]" * _HEADROOM, allow_inf_nan=False)
            except ValueError as exc:
                raise _unstorable(f"its JSON would not read back ({_reader_problem(exc)})") from exc
        # Pydantic writes NaN and infinity as null: look for them only when there is a null.
        if "null" in text and self.may_hold_floats() and self._holds_non_finite(value):
            raise _unstorable("it holds a NaN or infinite float, which JSON cannot carry (use None or a string)")
        return text

    def may_hold_floats(self) -> bool:
        """Whether a value of this type can hold a float (or something whose serializer plait cannot see)."""
        if self._may_hold_floats is None:
            try:
                schema = repr(self.adapter.core_schema)
            except Exception:  # noqa: BLE001 - no schema to read: assume the worst
                schema = "'type': 'any'"
            self._may_hold_floats = any(f"'type': '{kind}'" in schema for kind in _FLOAT_BEARING_SCHEMAS)
        return self._may_hold_floats

    def _holds_non_finite(self, value: T) -> bool:
        try:
            _FINITE_ONLY.encode(self.adapter.dump_python(value))
        except ValueError:
            return True
        except Exception:  # noqa: BLE001 - anything else was already written as JSON by Pydantic
            return False
        return False

    def load(self, text: str) -> T:
        return self.adapter.validate_json(text)

    def schema(self) -> dict[str, Any]:
        """JSON schema of the type ({} when it has none, e.g. Any)."""
        try:
            return self.adapter.json_schema()
        except Exception:  # noqa: BLE001 - some types have no JSON schema; they still run.
            return {}


def _opaque(value: Any) -> None:
    return None


# Core schema types whose values may be (or serialize to) a float.
_FLOAT_BEARING_SCHEMAS = ("float", "any", "function-plain", "function-wrap")
# Walks a value in C and raises ValueError at a NaN or infinity; anything not JSON-like is skipped.
_FINITE_ONLY = json.JSONEncoder(allow_nan=False, skipkeys=True, default=_opaque)


def _unstorable(reason: str) -> InputValidationError:
    return InputValidationError(f"{UNSTORABLE} {reason}")


def _reader_problem(exc: ValueError) -> str:
    text = str(exc)
    if "number out of range" in text:
        return "an integer has more than 4,300 digits; pass it as a string"
    if "recursion limit" in text:
        return f"it is nested more than {201 - _HEADROOM} levels deep"
    return text


def validation_summary(exc: ValidationError) -> str:
    """Pydantic's errors on one line: ``age: Input should be a valid integer (got str)``.

    Only the type of a wrong value is named, never the value: it may be a secret.
    """
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "value"
        parts.append(f"{where}: {error['msg']} (got {type(error.get('input')).__name__})")
    return "; ".join(parts)


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's error list as plain JSON, without the input values (they may be secrets)."""
    details: list[dict[str, Any]] = json.loads(exc.json(include_url=False, include_input=False))
    return details


def validate_input(codec: Codec[T], value: Any, what: str) -> T:
    """``value`` validated by ``codec``, or InputValidationError naming ``what`` with Pydantic's details."""
    try:
        return codec.validate(value)
    except ValidationError as exc:
        details = validation_details(exc)
        raise InputValidationError(f"{what} is invalid: {validation_summary(exc)}", errors=details) from exc


def read_json(text: str | None) -> Any:
    """Stored JSON text as Python values; text that cannot be decoded becomes an ``UNREADABLE_KEY`` marker.

    One bad row must never stop a listing, a subscriber or the webhook outbox.
    """
    if text is None:
        return None
    try:
        return from_json(text)
    except ValueError as exc:
        return {UNREADABLE_KEY: f"stored JSON ({len(text)} characters) could not be decoded: {exc}"}


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
    "UNREADABLE_KEY",
    "Codec",
    "PydanticSerializationError",
    "ValidationError",
    "dump_any",
    "jsonable",
    "read_json",
    "type_name",
    "validate_input",
    "validation_details",
    "validation_summary",
]
