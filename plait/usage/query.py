"""Turning stored usage into ``plait.Usage`` and ``plait.UsageRow``; time bounds of reports."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from plait.errors import InputValidationError
from plait.store.usage import GROUP_EXPRESSIONS, CallRow, ReportRow
from plait.usage.models import Usage, UsageRow, nanos_to_cost


def check_group_by(group_by: str) -> None:
    if group_by not in GROUP_EXPRESSIONS:
        raise InputValidationError(f"cannot group usage by {group_by!r}: use one of {', '.join(GROUP_EXPRESSIONS)}")


def to_epoch(value: datetime | timedelta | float | None, now: float, name: str) -> float | None:
    """A report bound as epoch seconds: a datetime (naive means UTC), a timedelta back from now, or epoch seconds."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return now - value.total_seconds()
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise InputValidationError(f"{name} must be a datetime, a timedelta (back from now) or epoch seconds")


def totals_of(calls: Iterable[CallRow]) -> Usage:
    """The sum of ``calls``, split per model."""
    per_model: dict[str, list[CallRow]] = {}
    for call in calls:
        per_model.setdefault(call.model, []).append(call)
    by_model = {model: _sum(group) for model, group in per_model.items()}
    total = _sum([call for group in per_model.values() for call in group])
    return total.model_copy(update={"by_model": by_model})


def _sum(calls: list[CallRow]) -> Usage:
    costs = [call.cost_nanos for call in calls if call.cost_nanos is not None]
    return Usage(
        input_tokens=sum(call.input_tokens for call in calls),
        output_tokens=sum(call.output_tokens for call in calls),
        cost=nanos_to_cost(sum(costs)) if costs else None,
        calls=len(calls),
    )


def by_attempt(calls: Iterable[CallRow]) -> dict[tuple[str, int], Usage]:
    """Each step attempt's usage, by (step key, attempt)."""
    grouped: dict[tuple[str, int], list[CallRow]] = {}
    for call in calls:
        grouped.setdefault((call.step_key, call.attempt), []).append(call)
    return {key: totals_of(group) for key, group in grouped.items()}


def usage_rows(group_by: str, rows: list[ReportRow]) -> list[UsageRow]:
    return [
        UsageRow(
            group_by=group_by,
            key=row.key,
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            cache_read_tokens=row.cache_read_tokens,
            cache_write_tokens=row.cache_write_tokens,
            reasoning_tokens=row.reasoning_tokens,
            cost=nanos_to_cost(row.cost_nanos),
            calls=row.calls,
            runs=row.runs,
            unknown_cost_calls=row.unknown_cost_calls,
        )
        for row in rows
    ]
