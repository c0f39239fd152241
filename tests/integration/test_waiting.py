"""Durable waiting under the fake clock: timers, events, approvals, suspensions and polls."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

import plait
from plait.testing import FakeClock
from tests.conftest import run_sql

START = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def engine(db_url: str, clock: FakeClock) -> Iterator[plait.Engine]:
    with plait.Engine(db_url, clock=clock, poll_interval=0.05) as engine:
        yield engine


def settled(engine: plait.Engine, run: plait.RunHandle[object], status: plait.RunStatus) -> plait.Run:
    """Let the worker do everything due, then check where the run stands."""
    engine.run_until_idle()
    info = run.info()
    assert info.status == status, f"run {run.id} is {info.status}, expected {status}"
    return info


class Upgrade(BaseModel):
    plan: str


@plait.step
def double(x: int) -> int:
    return x * 2


def test_sleep_parks_the_run_without_a_lease_until_due(engine: plait.Engine, clock: FakeClock, db_url: str) -> None:
    flow = plait.workflow("napper", input=int).sleep(timedelta(days=3)).then(double).commit()
    run = engine.start(flow, 21)
    info = settled(engine, run, plait.RunStatus.WAITING)
    assert info.wait is not None and info.wait["kind"] == "sleep"
    assert info.wait["wake_at"] == (START + timedelta(days=3)).timestamp()
    assert run_sql(db_url, "SELECT owner FROM plait_runs WHERE id = ?", (run.id,)) == [(None,)]
    clock.advance(days=2, hours=23)
    settled(engine, run, plait.RunStatus.WAITING)
    clock.advance(hours=1)
    assert run.result(timeout=10) == 42


def test_sleep_until_a_time_or_a_function_of_the_value(engine: plait.Engine, clock: FakeClock) -> None:
    at_noon = plait.workflow("noon", input=int).sleep_until(START + timedelta(hours=12)).then(double).commit()

    def in_value_hours(x: int) -> datetime:
        return START + timedelta(hours=x)

    later = plait.workflow("later", input=int).sleep_until(in_value_hours).then(double.with_options(id="d")).commit()
    first, second = engine.start(at_noon, 1), engine.start(later, 5)
    settled(engine, first, plait.RunStatus.WAITING)
    settled(engine, second, plait.RunStatus.WAITING)
    clock.advance(hours=5)
    assert second.result(timeout=10) == 10
    assert first.status == plait.RunStatus.WAITING
    clock.advance(hours=7)
    assert first.result(timeout=10) == 2


def test_event_sent_before_the_wait_is_kept(engine: plait.Engine, clock: FakeClock) -> None:
    flow = plait.workflow("early", input=int).sleep(60).wait_for_event("upgraded", schema=Upgrade).commit()
    run = engine.start(flow, 1)
    settled(engine, run, plait.RunStatus.WAITING)
    assert run.send_event("upgraded", {"plan": "pro"}) is True
    clock.advance(minutes=1)
    assert run.result(timeout=10) == Upgrade(plan="pro")


def test_event_wakes_a_waiting_run_and_duplicates_are_delivered_once(engine: plait.Engine) -> None:
    flow = plait.workflow("waiter", input=int).wait_for_event("upgraded", schema=Upgrade).commit()
    run = engine.start(flow, 1)
    info = settled(engine, run, plait.RunStatus.WAITING)
    assert info.wait == {"kind": "event", "step_id": "wait_upgraded", "event": "upgraded", "deadline": None}
    assert engine.send_event(run.id, "upgraded", {"plan": "team"}, event_id="evt-1") is True
    assert engine.send_event(run.id, "upgraded", {"plan": "other"}, event_id="evt-1") is False
    assert run.result(timeout=10) == Upgrade(plan="team")
    assert [(s.step_id, s.output) for s in run.steps()] == [("wait_upgraded", {"plan": "team"})]


def test_bad_events_get_clear_errors_and_store_nothing(engine: plait.Engine) -> None:
    flow = plait.workflow("strict_waiter", input=int).wait_for_event("upgraded", schema=Upgrade).commit()
    run = engine.start(flow, 1)
    settled(engine, run, plait.RunStatus.WAITING)
    with pytest.raises(plait.InputValidationError) as caught:
        run.send_event("upgraded", {"plan": 3})
    assert caught.value.errors[0]["loc"] == ["plan"]
    with pytest.raises(plait.InputValidationError, match="never waits for event 'downgraded'"):
        run.send_event("downgraded", {})
    with pytest.raises(plait.RunNotFound):
        engine.send_event("no-such-run", "upgraded", {"plan": "x"})
    run.send_event("upgraded", {"plan": "ok"})
    assert run.result(timeout=10) == Upgrade(plan="ok")
    with pytest.raises(plait.RunStateError, match="already succeeded"):
        run.send_event("upgraded", {"plan": "late"})


def test_wait_timeout_fails_with_event_timeout_or_takes_the_default(engine: plait.Engine, clock: FakeClock) -> None:
    strict = plait.workflow("strict", input=int).wait_for_event("go", schema=Upgrade, timeout=timedelta(hours=1))
    lenient = plait.workflow("lenient", input=int).wait_for_event(
        "go", schema=Upgrade, timeout=timedelta(hours=1), default=None
    )
    a, b = engine.start(strict.commit(), 1), engine.start(lenient.commit(), 1)
    settled(engine, a, plait.RunStatus.WAITING)
    settled(engine, b, plait.RunStatus.WAITING)
    clock.advance(hours=1)
    with pytest.raises(plait.RunFailed) as caught:
        a.result(timeout=10)
    assert caught.value.error["code"] == "event.timeout"
    assert b.result(timeout=10) is None


class Budget(BaseModel):
    amount: int


@plait.step
def spend(decision: plait.Approval[Budget]) -> str:
    assert decision.data is not None
    return f"spent {decision.data.amount}"


@plait.step
def refuse(decision: plait.Approval[Budget]) -> str:
    return f"refused: {decision.reason}"


def approval_flow() -> plait.Workflow[int, str]:
    return (
        plait.workflow("purchase", input=int)
        .then(plait.approval("manager", schema=Budget))
        .branch((lambda d: d.approved, spend), default=refuse)
        .commit()
    )


def test_approval_and_rejection_drive_a_branch(engine: plait.Engine) -> None:
    flow = approval_flow()
    yes, no = engine.start(flow, 1), engine.start(flow, 2)
    assert settled(engine, yes, plait.RunStatus.WAITING).wait == {
        "kind": "approval",
        "step_id": "manager",
        "deadline": None,
    }
    settled(engine, no, plait.RunStatus.WAITING)
    with pytest.raises(plait.InputValidationError):
        yes.approve("manager", {"amount": "lots"})
    with pytest.raises(plait.InputValidationError, match="no approval step 'boss'"):
        yes.approve("boss", {"amount": 1})
    yes.approve("manager", {"amount": 300})
    no.reject("manager", "too expensive")
    assert yes.result(timeout=10) == "spent 300"
    assert no.result(timeout=10) == "refused: too expensive"


class Question(BaseModel):
    answer: str


def test_suspend_and_resume_round_trip(engine: plait.Engine) -> None:
    seen: list[object] = []

    @plait.step(resume_schema=Question)
    def ask(ctx: plait.Context, topic: str) -> str:
        seen.append(ctx.resume_data)
        if ctx.resume_data is None:
            ctx.suspend({"question": f"what about {topic}?"})
        return f"{topic}: {ctx.resume_data.answer}"

    flow = plait.workflow("interview", input=str).then(ask).commit()
    run = engine.start(flow, "pricing")
    info = settled(engine, run, plait.RunStatus.SUSPENDED)
    assert info.wait is not None and info.wait["payload"] == {"question": "what about pricing?"}
    with pytest.raises(plait.InputValidationError):
        run.resume("ask", {"reply": "x"})
    with pytest.raises(plait.RunStateError, match="not suspended in step 'other'"):
        run.resume("other", {"answer": "x"})
    run.resume("ask", {"answer": "cheaper"})
    assert run.result(timeout=10) == "pricing: cheaper"
    assert seen == [None, Question(answer="cheaper")]


class Batch(BaseModel):
    batch_id: str
    checks: int = 0


def make_poll_step(done_on: int) -> tuple[plait.Step[str, str], list[int]]:
    checks: list[int] = []

    def check(state: dict[str, object]) -> str | plait.Poll[dict[str, object]]:
        count = int(str(state["checks"])) + 1
        checks.append(count)
        if count >= done_on:
            return f"batch {state['batch_id']} done after {count} checks"
        return plait.Poll({**state, "checks": count}, every=timedelta(minutes=10))

    @plait.step(check=check)
    def submit(job: str) -> plait.Poll[dict[str, object]]:
        return plait.Poll({"batch_id": job, "checks": 0}, every=timedelta(minutes=10), max_wait=timedelta(hours=1))

    return submit, checks


def advance_through_checks(
    engine: plait.Engine, clock: FakeClock, run: plait.RunHandle[object], step: timedelta, times: int
) -> None:
    """Advance the clock once per poll check, each time after the run has parked again."""
    for _ in range(times):
        settled(engine, run, plait.RunStatus.WAITING)
        clock.advance(step)


def test_poll_succeeds_on_the_third_check(engine: plait.Engine, clock: FakeClock) -> None:
    submit, checks = make_poll_step(done_on=3)
    flow = plait.workflow("batcher", input=str).then(submit).commit()
    run = engine.start(flow, "b-1")
    info = settled(engine, run, plait.RunStatus.WAITING)
    assert info.wait is not None and info.wait["kind"] == "poll"
    advance_through_checks(engine, clock, run, timedelta(minutes=10), 3)
    assert run.result(timeout=10) == "batch b-1 done after 3 checks"
    assert checks == [1, 2, 3]


def test_poll_that_outlives_max_wait_fails(engine: plait.Engine, clock: FakeClock) -> None:
    submit, checks = make_poll_step(done_on=100)
    flow = plait.workflow("slow_batcher", input=str).then(submit).commit()
    run = engine.start(flow, "b-2")
    advance_through_checks(engine, clock, run, timedelta(minutes=10), 6)
    with pytest.raises(plait.RunFailed) as caught:
        run.result(timeout=10)
    assert caught.value.error["code"] == "step.timeout"
    assert len(checks) == 6  # every 10 minutes for an hour, the last one at the deadline


def test_parallel_branch_sleeps_while_the_other_finishes(engine: plait.Engine, clock: FakeClock) -> None:
    napping = plait.workflow("nap_child", input=int).sleep(timedelta(hours=1)).then(double).commit()

    @plait.step
    def now_value(x: int) -> int:
        return x + 1

    flow = plait.workflow("nap_parent", input=int).parallel(napping, now_value).commit()
    run = engine.start(flow, 10)
    info = settled(engine, run, plait.RunStatus.WAITING)
    assert info.wait is not None and info.wait["kind"] == "child"
    assert [s.step_id for s in run.steps()] == ["now_value"]
    clock.advance(hours=1)
    assert run.result(timeout=10) == (20, 11)


def drip_campaign(send: Callable[[str, str], None]) -> plait.Workflow[str, str]:
    @plait.step
    def welcome(email: str) -> str:
        send("welcome", email)
        return email

    @plait.step
    def tip(email: str) -> str:
        send("tip", email)
        return email

    @plait.step
    def thank(upgrade: Upgrade | None) -> str:
        send("thanks", str(upgrade))
        return "upgraded"

    @plait.step
    def nudge(upgrade: Upgrade | None) -> str:
        send("nudge", "none")
        return "nudged"

    return (
        plait.workflow("drip", input=str, output=str)
        .then(welcome)
        .sleep(timedelta(days=1))
        .then(tip)
        .sleep(timedelta(days=2))
        .wait_for_event("upgraded", schema=Upgrade, timeout=timedelta(days=7), default=None)
        .branch((lambda u: u is not None, thank), default=nudge)
        .commit()
    )


def test_drip_campaign_runs_a_simulated_week_in_well_under_a_second(engine: plait.Engine, clock: FakeClock) -> None:
    sent: list[tuple[str, str]] = []
    flow = drip_campaign(lambda kind, to: sent.append((kind, to)))
    started = time.monotonic()
    upgrader, idler = engine.start(flow, "ada@x"), engine.start(flow, "bob@x")
    engine.run_until_idle()
    assert sorted(sent) == [("welcome", "ada@x"), ("welcome", "bob@x")]
    clock.advance(days=1)
    engine.run_until_idle()
    assert sorted(kind for kind, _ in sent) == ["tip", "tip", "welcome", "welcome"]
    clock.advance(days=2)
    engine.run_until_idle()
    assert upgrader.status == idler.status == plait.RunStatus.WAITING
    upgrader.send_event("upgraded", {"plan": "pro"})
    assert upgrader.result(timeout=10) == "upgraded"
    clock.advance(days=7)
    assert idler.result(timeout=10) == "nudged"
    assert time.monotonic() - started < 1.0
    assert sorted(sent) == sorted(
        [
            ("welcome", "ada@x"),
            ("welcome", "bob@x"),
            ("tip", "ada@x"),
            ("tip", "bob@x"),
            ("thanks", "plan='pro'"),
            ("nudge", "none"),
        ]
    )


def test_a_thousand_sleeping_runs_cost_rows_not_workers(db_url: str, clock: FakeClock, tmp_path: Path) -> None:
    flow = plait.workflow("sleepers", input=int).sleep(timedelta(days=1)).then(double).commit()
    with plait.Engine(db_url, clock=clock, concurrency=8, poll_interval=0.05) as engine:
        runs = [engine.start(flow, i) for i in range(1000)]
        engine.run_until_idle(timeout=60)
        assert len(engine.list_runs(status="waiting", limit=1000).items) == 1000
        clock.advance(days=1)
        assert [r.result(timeout=60) for r in runs] == [2 * i for i in range(1000)]
