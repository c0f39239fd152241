"""Model usage, cost and budgets on a real store (both backends)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from genai_prices import Usage as PriceUsage
from genai_prices import calc_price
from pydantic import BaseModel, SecretStr

import plait
from tests.conftest import run_sql

ROOT = Path(__file__).resolve().parents[2]
CRASH_APP = Path(__file__).with_name("usage_crash_app.py")


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("document_pipeline", ROOT / "examples" / "document_pipeline.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PIPELINE = load_example()
DOCUMENT = {"title": "Q3", "pages": ["Revenue grew. " * 40, "  ", "Costs fell. " * 20]}


def price(model: str, provider: str, input_tokens: int, output_tokens: int) -> float:
    usage = PriceUsage(input_tokens=input_tokens, output_tokens=output_tokens)
    return float(calc_price(usage, model, provider_id=provider).total_price)


def test_pipeline_cost_per_step_and_run_matches_the_price_table(engine: plait.Engine) -> None:
    run = engine.start(PIPELINE.pipeline, DOCUMENT)
    assert run.result(timeout=30).verdict == "sentiment: positive"
    # By hand: the fake client bills len(prompt) // 4 input tokens and 120 output tokens per section.
    sections = ["Revenue grew. " * 40, "Costs fell. " * 20]
    summary_inputs = [len(f"Summarize: {s.strip()}") // 4 for s in sections]
    assert summary_inputs == [142, 62]
    summary_cost = (sum(summary_inputs) * 0.15 + 240 * 0.60) / 1e6  # gpt-4o-mini: $0.15 / $0.60 per million
    analysis_cost = (300 * 0.80 + 80 * 4.00) / 1e6  # claude-3-5-haiku: $0.80 / $4.00 per million
    assert summary_cost == pytest.approx(sum(price("gpt-4o-mini", "openai", n, 120) for n in summary_inputs))
    assert analysis_cost == pytest.approx(price("claude-3-5-haiku-20241022", "anthropic", 300, 80))

    steps = {record.step_id: record for record in run.steps()}
    assert steps["extract"].usage == plait.Usage()
    assert steps["summarize"].usage.calls == 2
    assert steps["summarize"].usage.cost == pytest.approx(summary_cost, abs=1e-9)
    assert steps["analyze"].usage.cost == pytest.approx(analysis_cost, abs=1e-9)
    usage = run.info().usage
    assert (usage.calls, usage.input_tokens, usage.output_tokens) == (3, 204 + 300, 240 + 80)
    assert usage.cost == pytest.approx(summary_cost + analysis_cost, abs=1e-9)
    assert set(usage.by_model) == {"gpt-4o-mini", "claude-3-5-haiku-20241022"}
    assert usage.by_model["gpt-4o-mini"].calls == 2

    by_model = {row.key: row for row in engine.usage(group_by="model")}
    assert by_model["gpt-4o-mini"].cost == pytest.approx(summary_cost, abs=1e-9)
    assert by_model["claude-3-5-haiku-20241022"].runs == 1
    [workflow_row] = engine.usage(group_by="workflow")
    assert (workflow_row.key, workflow_row.calls, workflow_row.cost) == ("document-pipeline", 3, usage.cost)
    assert {row.key for row in engine.usage(group_by="step")} == {
        "document-pipeline/summarize",
        "document-pipeline/analyze",
    }
    assert len(engine.usage(group_by="day")) == 1
    assert engine.usage(since=engine.clock.now().timestamp() + 60) == []

    stored = run_sql(engine.url, "SELECT cost_source, price_version, prompt, response FROM plait_usage")
    assert len(stored) == 3
    assert all(row[0] == "computed" and str(row[1]).startswith("genai-prices ") for row in stored)
    assert all(row[2] is None and row[3] is None for row in stored)  # prompts are kept only when asked


def test_prompts_are_stored_only_when_asked_and_never_secrets(db_url: str) -> None:
    class Credentials(BaseModel):
        api_key: SecretStr
        question: str

    @plait.step
    def ask(ctx: plait.Context, question: str) -> str:
        prompt = [{"role": "user", "content": Credentials(api_key=SecretStr("sk-very-secret"), question=question)}]
        ctx.record_usage(model="gpt-4o", input_tokens=10, output_tokens=5, cost=0.25, prompt=prompt, response="42")
        return "42"

    flow = plait.workflow("prompts", input=str).then(ask).commit()
    with plait.Engine(db_url, store_prompts=True) as engine:
        run = engine.start(flow, "meaning of life?")
        assert run.result(timeout=10) == "42"
        [(prompt, response, cost_nanos, source)] = run_sql(
            db_url, "SELECT prompt, response, cost_nanos, cost_source FROM plait_usage"
        )
        assert "meaning of life?" in prompt and "sk-very-secret" not in prompt and response == "42"
        assert (cost_nanos, source) == (250_000_000, "given")
        assert run.info().usage.cost == 0.25
        assert all("sk-very-secret" not in str(e.payload) for e in run.events(follow=False))


@plait.step
def think(ctx: plait.Context, count: int) -> int:
    ctx.record_usage(model="gpt-4o", input_tokens=80, output_tokens=20, provider="openai")
    return count + 1


def looping(name: str, budget: plait.Budget | None = None, until: int = 1000) -> plait.Workflow[int, int]:
    return plait.workflow(name, input=int, budget=budget).dountil(think, lambda n: n >= until).commit()


def test_budget_fail_stops_the_loop_before_the_step_past_it(engine: plait.Engine) -> None:
    flow = looping("frugal", plait.Budget(max_tokens=350))
    run = engine.start(flow, 0)
    with pytest.raises(plait.RunFailed) as failed:
        run.result(timeout=30)
    assert failed.value.error["code"] == "run.budget_exceeded"
    assert failed.value.error["step_id"] == "think"
    # 100 tokens per iteration: after 4 the total (400) reached 350, so the 5th never started.
    assert [r.key for r in run.steps()] == ["think#1", "think#2", "think#3", "think#4"]
    assert run.info().usage.input_tokens + run.info().usage.output_tokens == 400


def test_budget_suspend_parks_until_raise_budget(engine: plait.Engine) -> None:
    flow = looping("patient", until=6)
    run = engine.start(flow, 0, budget=plait.Budget(max_tokens=250, on_exceed="suspend"))
    engine.run_until_idle()
    info = run.info()
    assert info.status == plait.RunStatus.SUSPENDED
    assert info.wait is not None and info.wait["kind"] == "budget" and info.wait["step_id"] == "think"
    assert info.usage.calls == 3
    with pytest.raises(plait.InputValidationError):
        engine.raise_budget(run.id)
    engine.raise_budget(run.id, max_tokens=450)  # room for two more iterations
    engine.run_until_idle()
    assert run.info().status == plait.RunStatus.SUSPENDED and run.info().usage.calls == 5
    engine.raise_budget(run.id, max_tokens=10_000)
    assert run.result(timeout=30) == 6
    assert run.info().usage.calls == 6


def test_budget_left_tells_a_step_what_remains(engine: plait.Engine) -> None:
    seen: list[plait.Budget | None] = []

    @plait.step
    def careful(ctx: plait.Context, n: int) -> int:
        seen.append(ctx.budget_left)
        ctx.record_usage(model="gpt-4o", input_tokens=30, output_tokens=10, cost=0.5)
        seen.append(ctx.budget_left)
        return n

    flow = plait.workflow("careful", input=int).then(careful).then(careful.with_options(id="again")).commit()
    assert engine.start(flow, 1, budget=plait.Budget(max_cost=2.0, max_tokens=1000)).result(timeout=10) == 1
    assert [(b.max_cost, b.max_tokens) for b in seen if b] == [(2.0, 1000), (1.5, 960), (1.5, 960), (1.0, 920)]
    assert engine.start(flow, 1).result(timeout=10) == 1
    assert seen[-1] is None


def test_failed_attempts_keep_their_calls_by_attempt(engine: plait.Engine) -> None:
    calls: list[int] = []

    @plait.step(retry=plait.Retry(max_attempts=2, initial=0))
    def flaky_llm(ctx: plait.Context, n: int) -> int:
        ctx.record_usage(model="gpt-4o", input_tokens=100, output_tokens=10)
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("the model answered nonsense")
        return n

    run = engine.start(plait.workflow("flaky_llm", input=int).then(flaky_llm).commit(), 3)
    assert run.result(timeout=10) == 3
    assert [(r.attempt, r.status, r.usage.calls) for r in run.steps()] == [(1, "failed", 1), (2, "succeeded", 1)]
    assert run.info().usage.calls == 2  # both calls were paid for


def test_rerun_from_starts_at_the_reused_steps_usage_and_reports_count_calls_once(engine: plait.Engine) -> None:
    first = engine.start(PIPELINE.pipeline, DOCUMENT)
    first.result(timeout=30)
    again = engine.rerun_from(first.id, "analyze")
    again.result(timeout=30)
    before, after = first.info().usage, again.info().usage
    assert after.calls == before.calls  # two reused summary calls plus its own analysis call
    assert after.cost == pytest.approx(before.cost or 0, abs=1e-9)
    [row] = engine.usage(group_by="workflow")
    assert (row.calls, row.runs) == (4, 2)


def test_rerun_from_keeps_the_runs_own_budget(engine: plait.Engine) -> None:
    run = engine.start(looping("rerun_budget"), 0, budget=plait.Budget(max_tokens=150))
    with pytest.raises(plait.RunFailed):
        run.result(timeout=10)
    again = engine.rerun_from(run.id, "think")
    with pytest.raises(plait.RunFailed, match="max_tokens=150"):
        again.result(timeout=10)


def test_prune_deletes_usage_with_its_run(engine: plait.Engine) -> None:
    run = engine.start(looping("pruned", until=2), 0)
    run.result(timeout=10)
    assert run_sql(engine.url, "SELECT count(*) FROM plait_usage")[0][0] == 2
    assert engine.prune(0) == 1
    assert run_sql(engine.url, "SELECT count(*) FROM plait_usage")[0][0] == 0


def test_concurrent_runs_add_up_exactly(engine: plait.Engine) -> None:
    @plait.step
    def priced(ctx: plait.Context, n: int) -> int:
        ctx.record_usage(model="gpt-4o-mini", input_tokens=1000 + n, output_tokens=37 * n + 1, provider="openai")
        return n + 1

    builder: Any = plait.workflow("crowd", input=int)
    for index in range(5):
        builder = builder.then(priced.with_options(id=f"p{index}"))
    flow = builder.commit()
    runs = [engine.start(flow, n) for n in range(20)]
    for run in runs:
        run.result(timeout=60)
    infos = [run.info().usage for run in runs]
    [row] = engine.usage(group_by="workflow")
    assert row.calls == sum(u.calls for u in infos) == 100
    assert row.input_tokens == sum(u.input_tokens for u in infos)
    assert row.output_tokens == sum(u.output_tokens for u in infos)
    # Costs are kept in billionths of a dollar, so the report and the run totals agree to the last one.
    assert round((row.cost or 0) * 1e9) == sum(round((u.cost or 0) * 1e9) for u in infos)


def test_a_step_killed_after_its_model_call_records_the_rerun_as_attempt_2(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "log"

    def spawn(mode: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(CRASH_APP), db_url, str(log), mode, "crash-run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    victim = spawn("block")
    deadline = time.monotonic() + 30
    while "recorded 1" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline and victim.poll() is None, victim.stderr and victim.stderr.read()
        time.sleep(0.02)  # watching another process's progress, not waiting for a timer
    # The usage event is flushed within about 0.2 s of the call; wait until it is in the log.
    while not run_sql(db_url, "SELECT 1 FROM plait_events WHERE type = 'step.usage'"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=10)  # reaps it and closes its pipes
    assert run_sql(db_url, "SELECT count(*) FROM plait_usage")[0][0] == 0  # never committed
    survivor = spawn("run")
    out, err = survivor.communicate(timeout=60)
    assert survivor.returncode == 0, err
    assert out.strip() == "3"
    rows = run_sql(db_url, "SELECT step_key, attempt, input_tokens FROM plait_usage")
    assert rows == [("ask_model", 2, 1000)]
    totals = run_sql(db_url, "SELECT usage_calls, usage_input_tokens FROM plait_runs WHERE id = 'crash-run'")
    assert totals == [(1, 1000)]  # the killed attempt's call was paid for, but only committed calls count


def test_step_spans_carry_gen_ai_attributes(db_url: str) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from tests.integration.test_hooks_and_tracing import EXPORTER

    if not isinstance(trace.get_tracer_provider(), TracerProvider):  # the global provider can be set only once
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    EXPORTER.clear()
    with plait.Engine(db_url) as engine:
        engine.start(looping("traced_usage", until=1), 0).result(timeout=10)
    [span] = [s for s in EXPORTER.get_finished_spans() if s.name == "plait.step"]
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.request.model"] == "gpt-4o"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (80, 20)
    assert attributes["plait.cost"] == pytest.approx(price("gpt-4o", "openai", 80, 20))
    EXPORTER.clear()
