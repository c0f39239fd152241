"""Lifecycle hooks and OpenTelemetry spans, on real runs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import plait


@plait.step
def ok(x: int) -> int:
    return x + 1


@plait.step(retry=plait.Retry(max_attempts=2, initial=0))
def flaky(ctx: plait.Context, x: int) -> int:
    if ctx.attempt == 1:
        raise ValueError("first try fails")
    return x


def test_engine_and_workflow_hooks_fire_and_a_raising_hook_breaks_nothing(engine: plait.Engine) -> None:
    calls: list[tuple[str, str | None, int | None]] = []

    def record(name: str) -> plait.hooks.Hook:
        return lambda info: calls.append((name, info.step_id, info.attempt))

    async def after_run(info: plait.HookInfo) -> None:
        calls.append(("after_run", info.status, None))

    def explode(info: plait.HookInfo) -> None:
        raise RuntimeError("hook bug")

    engine.add_hooks(before_run=record("before_run"), after_run=after_run, on_step_error=record("on_step_error"))
    engine.add_hooks(plait.Hooks(before_step=explode, after_step=explode, before_run=explode))
    flow = plait.workflow("hooked", input=int, hooks=plait.Hooks(after_step=record("workflow_after_step")))
    run = engine.start(flow.then(ok).then(flaky).commit(), 1)
    assert run.result(timeout=10) == 2
    assert calls == [
        ("before_run", None, None),
        ("workflow_after_step", "ok", 1),
        ("on_step_error", "flaky", 1),
        ("workflow_after_step", "flaky", 2),
        ("after_run", "succeeded", None),
    ]
    with pytest.raises(plait.WorkflowDefinitionError):
        engine.add_hooks(after_everything=explode)


EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):  # the global provider can be set only once
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


def test_spans_per_run_and_step_attempt_with_child_runs_in_the_same_trace(
    spans: InMemorySpanExporter, db_url: str
) -> None:
    child = plait.workflow("traced_child", input=int).then(ok.with_options(id="inner")).commit()
    parent = plait.workflow("traced_parent", input=int).then(flaky).then(child).commit()
    with plait.Engine(db_url) as engine:
        run = engine.start(parent, 1)
        assert run.result(timeout=10) == 2
    finished = spans.get_finished_spans()
    runs = {dict(s.attributes or {})["plait.workflow"]: s for s in finished if s.name == "plait.run"}
    steps = [dict(s.attributes or {}) for s in finished if s.name == "plait.step"]
    assert set(runs) == {"traced_parent", "traced_child"}
    parent_span, child_span = runs["traced_parent"], runs["traced_child"]
    assert dict(parent_span.attributes or {})["plait.run_id"] == run.id
    assert dict(parent_span.attributes or {})["plait.outcome"] == "succeeded"
    assert child_span.context.trace_id == parent_span.context.trace_id
    assert child_span.parent is not None and child_span.parent.span_id == parent_span.context.span_id
    attempts = [(s["plait.step_id"], s["plait.attempt"], s["plait.outcome"]) for s in steps]
    assert sorted(attempts) == [("flaky", 1, "failed"), ("flaky", 2, "succeeded"), ("inner", 1, "succeeded")]
    assert all(s["plait.workflow.version"] for s in steps)
