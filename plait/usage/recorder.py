"""One run's usage while a worker executes it: calls buffered per step, totals, and its budget.

Calls wait in memory until their step attempt commits: they are written in
that commit, so recording a call costs no write of its own, and a crash
before the commit loses the record along with the attempt (the re-run
attempt records its own calls).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from plait.errors import InputValidationError
from plait.store.base import NewUsage, RunRow
from plait.usage.extract import Call, calls_from
from plait.usage.models import Budget, Totals, Usage, cost_to_nanos, nanos_to_cost
from plait.usage.prices import cost_of, price_version
from plait.usage.prompts import stored_text

if TYPE_CHECKING:
    from plait.tracing import Tracer


def _calls(result: Any, model: str | None, provider: str | None, tokens: dict[str, int | None]) -> list[Call]:
    if result is None:
        if not model:
            raise InputValidationError(
                "record_usage needs a response object, or model= with the token counts (the keyword form)"
            )
        count = {name: tokens[name] or 0 for name in _COUNTS}
        return [
            Call(
                model,
                provider,
                input_tokens=count["input_tokens"],
                output_tokens=count["output_tokens"],
                cache_read_tokens=count["cache_read_tokens"],
                cache_write_tokens=count["cache_write_tokens"],
                reasoning_tokens=count["reasoning_tokens"],
            )
        ]
    return [
        _with_counts(replace(call, model=model or call.model, provider=provider or call.provider), tokens)
        for call in calls_from(result)
    ]


_COUNTS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


@lru_cache(maxsize=64)
def _day(day_number: int) -> str:
    return datetime.fromtimestamp(day_number * 86400, UTC).date().isoformat()


def _with_counts(call: Call, tokens: dict[str, int | None]) -> Call:
    """The call with the token counts given by keyword in place of those read from the response."""
    given: dict[str, Any] = {name: value for name, value in tokens.items() if value is not None}
    return replace(call, **given) if given else call


class UsageRecorder:
    """Buffers a run's model calls per step key and keeps its committed totals."""

    def __init__(self, run: RunRow, workflow_budget: Budget | None, store_prompts: bool, tracer: Tracer | None) -> None:
        self._run = run
        self._store_prompts = store_prompts
        self._tracer = tracer
        self.budget = Budget.model_validate_json(run.budget) if run.budget else workflow_budget
        self.totals = Totals(
            run.usage_input_tokens, run.usage_output_tokens, run.usage_cost_nanos or 0, run.usage_calls
        )
        self._pending: dict[str, list[NewUsage]] = {}
        self._seq: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()  # synchronous steps record from their threads

    def record(
        self,
        step_id: str,
        key: str,
        attempt: int,
        now: float,
        result: Any,
        *,
        model: str | None,
        provider: str | None,
        cost: float | None,
        prompt: Any,
        response: Any,
        tokens: dict[str, int | None],
    ) -> list[NewUsage]:
        """Buffer the calls ``result`` (or the keyword form) stands for, until the attempt commits."""
        calls = _calls(result, model, provider, tokens)
        day = _day(int(now // 86400))
        records = []
        with self._lock:
            first = self._seq.get((key, attempt), 0)
            self._seq[(key, attempt)] = first + len(calls)
        for index, call in enumerate(calls):
            if cost is not None:
                # A given cost covers everything this record_usage call stands for: it goes on the first call.
                nanos, source, version = cost_to_nanos(cost if index == 0 else 0.0), "given", price_version()
            else:
                computed, source, version = cost_of(call, now)
                nanos = cost_to_nanos(computed)
            stored_response = response if response is not None else call.response_text
            records.append(
                NewUsage(
                    namespace=self._run.namespace,
                    run_id=self._run.id,
                    workflow_id=self._run.workflow_id,
                    step_id=step_id,
                    step_key=key,
                    attempt=attempt,
                    seq=first + index,
                    model=call.model or "unknown",
                    provider=call.provider,
                    input_tokens=call.input_tokens,
                    output_tokens=call.output_tokens,
                    cache_read_tokens=call.cache_read_tokens,
                    cache_write_tokens=call.cache_write_tokens,
                    reasoning_tokens=call.reasoning_tokens,
                    cost_nanos=nanos,
                    cost_source=source,
                    price_version=version,
                    prompt=stored_text(prompt) if self._store_prompts and index == 0 else None,
                    response=stored_text(stored_response) if self._store_prompts else None,
                    day=day,
                    created_at=now,
                )
            )
        with self._lock:
            self._pending.setdefault(key, []).extend(records)
        if self._tracer is not None:
            self._tracer.add_usage(self._run.id, key, attempt, records)
        return records

    def take(self, key: str) -> list[NewUsage]:
        """The calls of the attempt at ``key`` that is committing now."""
        if not self._pending:
            return []
        with self._lock:
            return self._pending.pop(key, [])

    def committed(self, usage: list[NewUsage]) -> None:
        """Count calls whose commit succeeded in the run's totals."""
        for call in usage:
            self.totals.input_tokens += call.input_tokens
            self.totals.output_tokens += call.output_tokens
            self.totals.cost_nanos += call.cost_nanos or 0
            self.totals.calls += 1

    def exceeded(self) -> str | None:
        """How the committed totals reach the budget, or None while within it (or without a budget)."""
        if self.budget is None:
            return None
        return self.budget.exceeded_by(self.totals.tokens, nanos_to_cost(self.totals.cost_nanos) or 0.0)

    def left(self) -> Budget | None:
        """What remains of the budget, counting calls not yet committed; None without a budget."""
        if self.budget is None:
            return None
        with self._lock:
            pending = [call for calls in self._pending.values() for call in calls]
        tokens = self.totals.tokens + sum(c.input_tokens + c.output_tokens for c in pending)
        nanos = self.totals.cost_nanos + sum(c.cost_nanos or 0 for c in pending)
        budget = self.budget
        return Budget(
            max_cost=None if budget.max_cost is None else max(0.0, budget.max_cost - (nanos_to_cost(nanos) or 0.0)),
            max_tokens=None if budget.max_tokens is None else max(0, budget.max_tokens - tokens),
            on_exceed=budget.on_exceed,
        )

    def summary(self) -> Usage:
        """The committed totals, as ``plait.Usage``."""
        totals = self.totals
        return Usage(
            input_tokens=totals.input_tokens,
            output_tokens=totals.output_tokens,
            cost=nanos_to_cost(totals.cost_nanos) if totals.calls else None,
            calls=totals.calls,
        )
