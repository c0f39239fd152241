"""How a failure is stored: a code, a message, where it happened, and a traceback for debugging.

What is stored is also shown (API, events, webhooks), so it never carries the
input values Pydantic puts in a validation error's text: a field typed as a
secret would be written out in clear. Text is made valid UTF-8 so any reader
can decode it.
"""

from __future__ import annotations

import traceback
from typing import Any

from pydantic import ValidationError

from plait.errors import PlaitError
from plait.payloads import validation_summary

TRACEBACK_CHARS = 4000


def clean_text(text: str) -> str:
    """``text`` as valid UTF-8: lone surrogates become ``?`` (JSON readers refuse them)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def exception_text(exc: BaseException) -> str:
    """What an exception says, without input values when it is a validation error."""
    if isinstance(exc, ValidationError):
        return f"{exc.error_count()} validation error(s) for {exc.title}: {validation_summary(exc)}"
    if isinstance(exc, PlaitError):
        return exc.message
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails still gets recorded
        return f"<{type(exc).__name__} that cannot be shown as text>"


def safe_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` and its causes, each exception line written by ``exception_text``."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    parts: list[str] = []
    for index, item in enumerate(reversed(chain)):
        if index:
            parts.append("\nwhich led to:\n\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(item.__traceback__))
        parts.append(f"{type(item).__qualname__}: {exception_text(item)}\n")
    return "".join(parts)


def describe_error(exc: BaseException, step_id: str | None = None, attempt: int | None = None) -> dict[str, Any]:
    """The stored form of an error: code, message, type, where, and the traceback for debugging."""
    code = exc.code if isinstance(exc, PlaitError) else "step.failed"
    message = exception_text(exc) if isinstance(exc, PlaitError) else f"{type(exc).__name__}: {exception_text(exc)}"
    error: dict[str, Any] = {"code": code, "message": clean_text(message), "type": type(exc).__name__}
    if step_id is not None:
        error["step_id"] = step_id
    if attempt is not None:
        error["attempt"] = attempt
    error["traceback"] = clean_text(safe_traceback(exc)[-TRACEBACK_CHARS:])
    return error
