"""OpenTelemetry spans for runs and step attempts (needs ``pip install 'plait[otel]'``).

A span covers each stretch a worker executes a run ("plait.run", ending when
the run finishes or parks) and each step attempt ("plait.step", a child of it).
A child run's spans are children of the parent run's span: the trace context
is stored with the child run, so it crosses processes and restarts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from plait.hooks import HookInfo

if TYPE_CHECKING:
    from plait.store.base import NewUsage

log = logging.getLogger("plait.tracing")

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.propagate import extract, inject
    from opentelemetry.trace import Status, StatusCode
except ImportError:  # pragma: no cover - without the extra, tracing is simply off
    trace = None  # type: ignore[assignment]


def tracing_available() -> bool:
    return trace is not None


def current_trace_context() -> str | None:
    """The caller's trace context as a W3C traceparent, to parent a new run's spans on."""
    if trace is None:
        return None
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


class Tracer:
    """The tracing observer: one span per run execution and per step attempt."""

    def __init__(self) -> None:
        self._tracer = trace.get_tracer("plait")  # a proxy: it follows the provider set later
        self._runs: dict[str, Any] = {}
        self._steps: dict[tuple[str, str, int], Any] = {}

    def is_recording(self) -> bool:
        """Whether an OpenTelemetry SDK is set up: without one, spans would cost time and show nowhere."""
        return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider)

    def context_of(self, run_id: str) -> str | None:
        """The traceparent of the run's current span, for its child runs."""
        span = self._runs.get(run_id)
        if span is None:
            return None
        carrier: dict[str, str] = {}
        inject(carrier, context=trace.set_span_in_context(span))
        return carrier.get("traceparent")

    def begin_run(self, info: HookInfo, trace_context: str | None) -> None:
        parent = extract({"traceparent": trace_context}) if trace_context else otel_context.Context()
        span = self._tracer.start_span(
            "plait.run",
            context=parent,
            attributes={
                "plait.workflow": info.workflow_id,
                "plait.workflow.version": info.workflow_version,
                "plait.run_id": info.run_id,
            },
        )
        self._runs[info.run_id] = span

    def end_run(self, run_id: str, outcome: str) -> None:
        span = self._runs.pop(run_id, None)
        if span is not None:
            span.set_attribute("plait.outcome", outcome)
            if outcome == "failed":
                span.set_status(Status(StatusCode.ERROR))
            span.end()

    async def run_started(self, info: HookInfo) -> None:
        return None

    async def run_ended(self, info: HookInfo) -> None:
        return None

    async def step_started(self, info: HookInfo) -> None:
        parent = self._runs.get(info.run_id)
        context = trace.set_span_in_context(parent) if parent is not None else None
        span = self._tracer.start_span(
            "plait.step",
            context=context,
            attributes={
                "plait.workflow": info.workflow_id,
                "plait.workflow.version": info.workflow_version,
                "plait.run_id": info.run_id,
                "plait.step_id": info.step_id or "",
                "plait.attempt": info.attempt or 0,
            },
        )
        self._steps[(info.run_id, info.step_key or "", info.attempt or 0)] = span

    def add_usage(self, run_id: str, step_key: str, attempt: int, usage: list[NewUsage]) -> None:
        """Put model calls on the attempt's span as OpenTelemetry GenAI attributes (tokens and cost summed)."""
        span = self._steps.get((run_id, step_key, attempt))
        if span is None or not usage:
            return
        attributes = getattr(span, "attributes", None) or {}
        last = usage[-1]
        span.set_attribute("gen_ai.request.model", last.model)
        if last.provider:
            span.set_attribute("gen_ai.provider.name", last.provider)
        for name, added in (
            ("gen_ai.usage.input_tokens", sum(call.input_tokens for call in usage)),
            ("gen_ai.usage.output_tokens", sum(call.output_tokens for call in usage)),
        ):
            span.set_attribute(name, int(attributes.get(name, 0)) + added)
        costs = [call.cost_nanos for call in usage if call.cost_nanos is not None]
        if costs:
            span.set_attribute("plait.cost", float(attributes.get("plait.cost", 0.0)) + sum(costs) / 1e9)

    async def step_ended(self, info: HookInfo) -> None:
        span = self._steps.pop((info.run_id, info.step_key or "", info.attempt or 0), None)
        if span is None:
            return
        span.set_attribute("plait.outcome", "failed" if info.error else "succeeded")
        if info.error:
            span.set_status(Status(StatusCode.ERROR, str(info.error.get("message", ""))))
        span.end()
