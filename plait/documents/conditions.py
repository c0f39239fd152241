"""The comparison operators of document ``when`` conditions (and of recipe conditions).

``evaluate(op, left, right)`` is total: a comparison between values that cannot
be compared (a number with a string, a missing value with a number) is false,
never an exception, because the values come from data an LLM or a person wrote.
"""

from __future__ import annotations

import re
from typing import Any, Final

OPERATORS: Final = ("eq", "neq", "gt", "gte", "lt", "lte", "contains", "matches", "exists", "not_exists")
"""Every operator ``evaluate`` knows, in the order the catalog lists them."""

UNARY: Final = frozenset({"exists", "not_exists"})
"""Operators that look only at the left value."""

# Patterns come from documents: bounded so a hostile one cannot stall a worker for long.
MAX_PATTERN_LENGTH: Final = 500
MAX_MATCHED_LENGTH: Final = 100_000


def evaluate(op: str, left: Any, right: Any = None) -> bool:
    """Whether ``left <op> right`` holds; unknown operators raise ValueError."""
    if op == "exists":
        return left is not None
    if op == "not_exists":
        return left is None
    if op == "eq":
        return _same(left, right)
    if op == "neq":
        return not _same(left, right)
    if op in ("gt", "gte", "lt", "lte"):
        return _order(op, left, right)
    if op == "contains":
        return _contains(left, right)
    if op == "matches":
        return _matches(left, right)
    raise ValueError(f"unknown condition operator {op!r}: use one of {', '.join(OPERATORS)}")


MISSING: Final = object()
"""What ``lookup_field`` gives for a path that leads nowhere (unlike a present null)."""


def lookup_field(data: Any, path: str) -> Any:
    """The value at dot path ``path`` (``"options.depth"``, ``"items.0"``) in JSON data, or ``MISSING``."""
    for segment in path.split("."):
        if isinstance(data, dict) and segment in data:
            data = data[segment]
        elif isinstance(data, list) and segment.isdigit() and int(segment) < len(data):
            data = data[int(segment)]
        else:
            return MISSING
    return data


def field_holds(op: str, data: Any, path: str, right: Any = None) -> bool:
    """Whether ``<field at path> <op> right`` holds on ``data``; a missing field matches only ``not_exists``."""
    left = lookup_field(data, path)
    if left is MISSING:
        if op not in OPERATORS:
            raise ValueError(f"unknown condition operator {op!r}: use one of {', '.join(OPERATORS)}")
        return op == "not_exists"
    return evaluate(op, left, right)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(left: Any, right: Any) -> bool:
    # JSON has one number type: 1 equals 1.0, but True is not 1.
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    return bool(left == right)


def _order(op: str, left: Any, right: Any) -> bool:
    comparable = (_is_number(left) and _is_number(right)) or (isinstance(left, str) and isinstance(right, str))
    if not comparable:
        return False
    if op == "gt":
        return bool(left > right)
    if op == "gte":
        return bool(left >= right)
    if op == "lt":
        return bool(left < right)
    return bool(left <= right)


def _contains(left: Any, right: Any) -> bool:
    if isinstance(left, str):
        return isinstance(right, str) and right in left
    if isinstance(left, list):
        return any(_same(item, right) for item in left)
    if isinstance(left, dict):
        return isinstance(right, str) and right in left
    return False


def _matches(left: Any, right: Any) -> bool:
    if not isinstance(left, str) or not isinstance(right, str) or len(right) > MAX_PATTERN_LENGTH:
        return False
    try:
        pattern = re.compile(right)
    except re.error:
        return False
    return pattern.search(left[:MAX_MATCHED_LENGTH]) is not None


def pattern_problem(op: str, right: Any) -> str | None:
    """Why ``right`` cannot be the right side of ``op`` (None when it can), for validation."""
    if op in UNARY:
        return None
    if op == "matches":
        if not isinstance(right, str):
            return "'matches' needs a regular expression string as its value"
        if len(right) > MAX_PATTERN_LENGTH:
            return f"the pattern is longer than {MAX_PATTERN_LENGTH} characters"
        try:
            re.compile(right)
        except re.error as exc:
            return f"the pattern is not a valid regular expression ({exc})"
    if op in ("gt", "gte", "lt", "lte") and not (_is_number(right) or isinstance(right, str)):
        return f"'{op}' compares numbers or strings; give a number or a string as its value"
    return None
