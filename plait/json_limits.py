"""JSON from outside (HTTP bodies, trigger requests): bounded nesting and text that can be stored.

``json.loads`` accepts what plait cannot keep: a lone surrogate (``"\\ud800"``)
cannot be encoded as UTF-8 by any store, and a value nested hundreds deep
overflows the serializer long after the request was accepted. Both are refused
here, where the value enters, with a message saying what to change.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 100


class UnsafeJson(ValueError):
    """The JSON is malformed, nested deeper than ``MAX_DEPTH`` or holds a lone surrogate."""


class MalformedJson(UnsafeJson):
    """The bytes are not JSON at all."""


def parse_json(body: bytes) -> Any:
    """``body`` parsed as JSON and checked like ``check_json``; raises ``UnsafeJson``."""
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
    except UnsafeJson:
        raise
    except RecursionError:
        raise UnsafeJson(f"the JSON is nested more than {MAX_DEPTH} levels deep") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedJson(f"the body is not valid JSON: {exc}") from None
    except ValueError as exc:  # an integer over Python's digit limit
        raise UnsafeJson(f"the JSON holds a number plait cannot read: {exc}") from None
    # Cheap C-speed tests decide whether the walk is needed: a value cannot nest
    # deeper than it has brackets, and only a \\u escape can produce a surrogate.
    could_be_deep = body.count(b"[") + body.count(b"{") > MAX_DEPTH
    could_hold_surrogate = b"\\ud" in body or b"\\uD" in body
    if could_be_deep or could_hold_surrogate:
        _walk(value, strings=could_hold_surrogate)
    return value


def check_json(value: Any) -> None:
    """Raise ``UnsafeJson`` if ``value`` nests deeper than ``MAX_DEPTH`` or holds a lone surrogate."""
    _walk(value, strings=True)


def _walk(value: Any, *, strings: bool) -> None:
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if strings:
                _check_text(item)
        elif isinstance(item, dict | list | tuple):
            if depth >= MAX_DEPTH:
                raise UnsafeJson(f"the value is nested more than {MAX_DEPTH} levels deep")
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                if strings and isinstance(key, str):
                    _check_text(key)
                if isinstance(child, str | dict | list | tuple):
                    stack.append((child, depth + 1))


def is_storable_text(text: str) -> bool:
    """Whether ``text`` can be encoded as UTF-8 (no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _refuse_constant(name: str) -> Any:
    raise UnsafeJson(f"{name} is not a JSON number (plait could not store it)")


def _check_text(text: str) -> None:
    if not text.isascii() and not is_storable_text(text):
        raise UnsafeJson("a string holds a lone UTF-16 surrogate (like \\ud800), which is not text")
