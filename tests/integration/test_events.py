"""The event log: written with each change, read back in order, live, globally and by subscribers."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import timedelta

import pytest
from pydantic import BaseModel

import plait
from plait.testing import FakeClock


@plait.step
def first(ctx: plait.Context, x: int) -> int:
    ctx.log.info("starting with %s", x)
    ctx.progress(0.5, "halfway")
    ctx.emit("invoice.sent", {"amount": x})
    return x + 1


@plait.step
async def second(x: int) -> int:
    return x * 2


flow = plait.workflow("logged", input=int).then(first).then(second).commit()


def types(events: list[plait.Event]) -> list[str]:
    return [e.type for e in events]


def test_a_run_log_tells_the_whole_story_in_order(engine: plait.Engine, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="plait.step"):
        run = engine.start(flow, 3)
        assert run.result(timeout=10) == 8
    events = list(run.events())
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert types(events) == [
        "run.created",
        "run.started",
        "step.started",
        "step.log",
        "step.progress",
        "invoice.sent",
        "step.completed",
        "step.started",
        "step.completed",
        "run.completed",
    ]
    assert events[3].payload == {"level": "info", "message": "starting with 3"}
    assert events[4].payload == {"fraction": 0.5, "message": "halfway"}
    assert events[5].payload == {"data": {"amount": 3}} and events[5].step_id == "first"
    assert events[-1].payload == {"output": 8}
    assert "starting with 3" in caplog.text  # also forwarded to stdlib logging


def test_failures_retries_and_cancellation_are_logged(engine: plait.Engine) -> None:
    @plait.step(retry=plait.Retry(max_attempts=2, initial=0))
    def flaky(ctx: plait.Context, x: int) -> int:
        raise RuntimeError(f"boom {ctx.attempt}")

    failing = plait.workflow("flaky_logged", input=int).then(flaky).commit()
    run = engine.start(failing, 1)
    with pytest.raises(plait.RunFailed):
        run.result(timeout=10)
    events = list(run.events())
    assert types(events)[2:] == [
        "step.started",
        "step.failed",
        "step.retrying",
        "step.started",
        "step.failed",
        "run.failed",
    ]
    assert events[3].payload["error"]["message"] == "RuntimeError: boom 1"
    assert "traceback" not in events[3].payload["error"]
    assert events[4].payload == {"next_attempt": 2, "delay_seconds": 0.0}


def test_waits_timers_and_received_events_are_logged(db_url: str) -> None:
    class Go(BaseModel):
        ok: bool

    clock = FakeClock()
    waiting = plait.workflow("waits_logged", input=int).sleep(timedelta(hours=1)).wait_for_event("go", schema=Go)
    with plait.Engine(db_url, clock=clock) as engine:
        run = engine.start(waiting.commit(), 1)
        engine.run_until_idle()
        clock.advance(hours=1)
        engine.run_until_idle()
        run.send_event("go", {"ok": True})
        assert run.result(timeout=10) == Go(ok=True)
        logged = types(list(run.events()))
    assert logged == [
        "run.created",
        "run.started",
        "timer.set",
        "run.waiting",
        "timer.fired",
        "run.resumed",
        "run.waiting",
        "event.received",
        "run.resumed",
        "step.started",
        "step.completed",
        "run.completed",
    ]


def test_cancel_is_logged(engine: plait.Engine) -> None:
    gate = threading.Event()
    entered = threading.Event()

    @plait.step
    def blocked(x: int) -> int:
        entered.set()
        gate.wait(10)
        return x

    run = engine.start(plait.workflow("cancel_logged", input=int).then(blocked).commit(), 1)
    assert entered.wait(10)
    run.cancel()
    gate.set()
    with pytest.raises(plait.RunCancelled):
        run.result(timeout=10)
    assert types(list(run.events()))[-1] == "run.cancelled"


def test_the_stream_read_live_from_another_thread_equals_the_stored_history(engine: plait.Engine) -> None:
    @plait.step
    async def slow(ctx: plait.Context, x: int) -> int:
        for i in range(3):
            ctx.progress((i + 1) / 3)
            await asyncio.sleep(0.1)  # the step's own work: its progress must show while it runs
        return x

    chain = plait.workflow("slow_logged", input=int)
    for i in range(3):
        chain = chain.then(slow.with_options(id=f"slow{i}"))
    run = engine.start(chain.commit(), 1)
    seen: list[plait.Event] = []
    reader = threading.Thread(target=lambda: seen.extend(run.events()))
    reader.start()
    reader.join(timeout=30)
    assert not reader.is_alive()
    history = list(run.events(follow=False))
    assert [e.model_dump() for e in seen] == [e.model_dump() for e in history]
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
    assert types(seen).count("step.progress") == 9


def test_global_feed_pages_with_a_cursor_without_gaps_or_repeats(engine: plait.Engine) -> None:
    runs = [engine.start(flow, i) for i in range(5)]
    for run in runs:
        run.result(timeout=10)
    seen: list[int] = []
    cursor = None
    while True:
        page = engine.events(cursor, limit=7)
        if not page.items:
            break
        seen += [e.id for e in page.items]
        cursor = page.cursor
    assert len(seen) == len(set(seen)) == 5 * 10
    assert engine.events(cursor).items == []
    late = engine.start(flow, 99)
    late.result(timeout=10)
    assert {e.run_id for e in engine.events(cursor).items} == {late.id}


def test_subscribers_get_matching_events_and_a_failing_one_breaks_nothing(engine: plait.Engine) -> None:
    received: list[plait.Event] = []
    done = threading.Event()

    def collect(event: plait.Event) -> None:
        received.append(event)
        if event.type == "run.completed":
            done.set()

    def broken(event: plait.Event) -> None:
        raise RuntimeError("listener bug")

    other = plait.workflow("other_logged", input=int).then(second.with_options(id="s")).commit()
    engine.subscribe(collect, types={"run.completed", "invoice.sent"}, workflow=flow)
    engine.subscribe(broken)
    engine.start(other, 1).result(timeout=10)
    assert engine.start(flow, 2).result(timeout=10) == 6
    assert done.wait(10)
    assert types(received) == ["invoice.sent", "run.completed"]
    assert {e.workflow_id for e in received} == {"logged"}


def test_reserved_event_types_are_refused(engine: plait.Engine) -> None:
    @plait.step
    def sneaky(ctx: plait.Context, x: int) -> int:
        ctx.emit("run.completed", {})
        return x

    run = engine.start(plait.workflow("sneaky_flow", input=int).then(sneaky).commit(), 1)
    with pytest.raises(plait.RunFailed, match="must not"):
        run.result(timeout=10)


def test_prune_deletes_old_finished_runs_with_everything_they_wrote(db_url: str) -> None:
    clock = FakeClock()

    class Go(BaseModel):
        ok: bool

    waiter = plait.workflow("prune_waiter", input=int).wait_for_event("go", schema=Go).commit()
    with plait.Engine(db_url, clock=clock) as engine:
        old = engine.start(flow, 1)
        old.result(timeout=10)
        still_waiting = engine.start(waiter, 1)
        engine.run_until_idle()
        clock.advance(days=31)
        recent = engine.start(flow, 2)
        recent.result(timeout=10)
        assert engine.prune(timedelta(days=30)) == 1
        with pytest.raises(plait.RunNotFound):
            engine.get_run(old.id)
        assert list(old.events(follow=False)) == []
        assert engine.get_run(recent.id).status == plait.RunStatus.SUCCEEDED
        assert engine.get_run(still_waiting.id).status == plait.RunStatus.WAITING
        assert {e.run_id for e in engine.events(limit=1000).items} == {recent.id, still_waiting.id}


def test_workflow_state_is_shared_and_survives_a_restart(db_url: str) -> None:
    clock = FakeClock()

    @plait.step
    def remember(ctx: plait.Context, x: int) -> int:
        ctx.set_state(customer="ada", seen=x)
        ctx.record_usage(model="small-llm", input_tokens=120, output_tokens=30, cost=0.0004)
        return x

    @plait.step
    def recall(ctx: plait.Context, x: int) -> str:
        return f"{ctx.state['customer']} {ctx.state['seen']} {x}"

    flow = plait.workflow("stateful", input=int).then(remember).sleep(timedelta(hours=1)).then(recall).commit()
    with plait.Engine(db_url, clock=clock) as engine:
        run = engine.start(flow, 7)
        engine.run_until_idle()
    with plait.Engine(db_url, clock=clock) as engine:  # a new process: state comes back from the log
        engine.register(flow)
        clock.advance(hours=1)
        assert engine.get_run(run.id).result(timeout=10) == "ada 7 7"
        usage = [e.payload for e in engine.get_run(run.id).events(follow=False) if e.type == "step.usage"]
    assert usage == [{"model": "small-llm", "input_tokens": 120, "output_tokens": 30, "cost": 0.0004}]


def test_set_state_needs_the_event_log(db_url: str) -> None:
    @plait.step
    def store_it(ctx: plait.Context, x: int) -> int:
        ctx.set_state(x=x)
        return x

    with plait.Engine(db_url, events=False) as engine:
        run = engine.start(plait.workflow("no_log_state", input=int).then(store_it).commit(), 1)
        with pytest.raises(plait.RunFailed, match="event log"):
            run.result(timeout=10)
