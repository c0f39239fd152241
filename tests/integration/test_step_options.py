"""Step and workflow options: skip_if, a workflow's timeout (durable, waiting included) and its default on_error."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from pydantic import BaseModel

import plait
from plait.testing import FakeClock


class Order(BaseModel):
    amount: int
    vip: bool = False


@plait.step(skip_if=lambda order: order.amount == 0)
def charge(order: Order) -> Order:
    return Order(amount=order.amount * 10, vip=order.vip)


@plait.step(skip_if=lambda ctx, order: ctx.workflow_input.vip)
def add_fee(order: Order) -> Order:
    return Order(amount=order.amount + 1, vip=order.vip)


billing = plait.workflow("billing_skip", input=Order).then(charge).then(add_fee).commit()


def test_skip_if_records_the_step_skipped_and_passes_the_value_through(engine: plait.Engine) -> None:
    free = engine.start(billing, Order(amount=0))
    assert free.result(timeout=30) == Order(amount=1)
    assert [(s.step_id, s.status) for s in free.steps()] == [("charge", "skipped"), ("add_fee", "succeeded")]
    assert any(e.type == "step.skipped" and e.step_id == "charge" for e in free.events(follow=False))

    vip = engine.start(billing, Order(amount=2, vip=True))  # pred(ctx, value) reads the run's input
    assert vip.result(timeout=30) == Order(amount=20, vip=True)
    assert [(s.step_id, s.status) for s in vip.steps()] == [("charge", "succeeded"), ("add_fee", "skipped")]


@plait.step(skip_if=lambda value: 1 // 0)
def guarded(value: int) -> int:
    return value


def test_a_skip_if_that_raises_fails_the_step_with_a_message_naming_it(engine: plait.Engine) -> None:
    flow = plait.workflow("skip_raises", input=int).then(guarded).commit()
    with pytest.raises(plait.RunFailed) as failed:
        engine.start(flow, 1).result(timeout=30)
    assert "skip_if raised ZeroDivisionError" in failed.value.error["message"]


@plait.step
def flaky(value: int) -> int:
    raise RuntimeError("upstream down")


@plait.step(on_error="fail")
def strict(value: int) -> int:
    raise RuntimeError("must not be skipped")


@plait.step
def plus_one(value: int) -> int:
    return value + 1


def test_workflow_on_error_is_the_default_of_steps_that_set_none(engine: plait.Engine) -> None:
    lenient = plait.workflow("lenient", input=int, on_error="skip").then(flaky).then(plus_one).commit()
    run = engine.start(lenient, 41)
    assert run.result(timeout=30) == 42
    assert [(s.step_id, s.status) for s in run.steps()] == [("flaky", "skipped"), ("plus_one", "succeeded")]

    explicit = plait.workflow("explicit", input=int, on_error="skip").then(strict).commit()
    with pytest.raises(plait.RunFailed):
        engine.start(explicit, 1).result(timeout=30)
    assert flaky.options.on_error == "fail"  # the step object itself is unchanged


def test_workflow_options_are_checked_when_built() -> None:
    with pytest.raises(plait.WorkflowDefinitionError, match="timeout must be positive"):
        plait.workflow("bad", input=int, timeout=0)
    with pytest.raises(plait.WorkflowDefinitionError, match="on_error must be"):
        plait.workflow("bad", input=int, on_error="ignore")  # type: ignore[call-overload]
    with pytest.raises(plait.WorkflowDefinitionError, match="skip_if must be a function"):
        plait.step(skip_if=True)(plus_one.fn)  # type: ignore[call-overload]


# -- workflow timeout --------------------------------------------------------


class Paid(BaseModel):
    ok: bool


@plait.step
def ask(value: int) -> int:
    return value


@plait.step
def park_me(ctx: plait.Context, value: int) -> int:
    if ctx.resume_data is None:
        ctx.suspend({"need": "a human"})
    return value


sleepy = plait.workflow("sleepy", input=int, timeout=timedelta(hours=1)).then(ask).sleep(timedelta(days=1)).commit()
patient = plait.workflow("patient", input=int, timeout=3600).then(ask).wait_for_event("paid", schema=Paid).commit()
suspended = plait.workflow("held", input=int, timeout=3600).then(park_me).commit()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timed(db_url: str, clock: FakeClock) -> Iterator[plait.Engine]:
    with plait.Engine(db_url, clock=clock) as engine:
        engine.register(sleepy, patient, suspended)
        yield engine


def assert_timed_out(run: plait.RunHandle[object]) -> None:
    info = run.info()
    assert info.status == plait.RunStatus.FAILED
    assert info.error is not None and info.error["code"] == "run.timeout"
    assert "timeout of 3600s" in info.error["message"]
    with pytest.raises(plait.RunFailed) as failed:
        run.result(timeout=5)
    assert failed.value.error["code"] == "run.timeout"


@pytest.mark.parametrize("flow", [sleepy, patient, suspended], ids=["sleeping", "waiting", "suspended"])
def test_timeout_fires_while_the_run_is_parked(timed: plait.Engine, clock: FakeClock, flow: plait.Workflow) -> None:  # type: ignore[type-arg]
    run = timed.start(flow, 1)
    timed.run_until_idle()
    assert run.status in (plait.RunStatus.WAITING, plait.RunStatus.SUSPENDED)
    clock.advance(minutes=59)
    timed.run_until_idle()
    assert run.status in (plait.RunStatus.WAITING, plait.RunStatus.SUSPENDED)
    clock.advance(minutes=2)
    timed.run_until_idle()
    assert_timed_out(run)


def test_timeout_survives_a_restart(db_url: str) -> None:
    clock = FakeClock()
    with plait.Engine(db_url, clock=clock) as first:
        first.register(patient)
        run_id = first.start(patient, 1).id
        first.run_until_idle()
        assert first.get_run(run_id).status == plait.RunStatus.WAITING
    clock.advance(hours=2)  # the deadline passed while no process ran
    with plait.Engine(db_url, clock=clock) as second:
        second.register(patient)
        second.run_until_idle()
        assert_timed_out(second.get_run(run_id))


def test_an_event_before_the_deadline_lets_the_run_finish(timed: plait.Engine, clock: FakeClock) -> None:
    run = timed.start(patient, 1)
    timed.run_until_idle()
    clock.advance(minutes=30)
    run.send_event("paid", {"ok": True})
    assert run.result(timeout=30) == Paid(ok=True)


entered = threading.Event()


@plait.step
async def slow(value: int) -> int:
    entered.set()
    await asyncio.sleep(3600)  # cancelled when the run's deadline passes
    return value


def test_timeout_cancels_a_step_that_is_still_running(db_url: str) -> None:
    clock = FakeClock()
    flow = plait.workflow("slowpoke", input=int, timeout=60).then(slow).commit()
    entered.clear()
    with plait.Engine(db_url, clock=clock) as engine:
        run = engine.start(flow, 1)
        assert entered.wait(10), "the step never started"  # the deadline's timer is armed before it
        clock.advance(seconds=61)
        with pytest.raises(plait.RunFailed) as failed:
            run.result(timeout=30)
        assert failed.value.error["code"] == "run.timeout"


def test_a_retry_gets_a_new_deadline(timed: plait.Engine, clock: FakeClock) -> None:
    run = timed.start(patient, 1)
    timed.run_until_idle()
    clock.advance(hours=2)
    timed.run_until_idle()
    assert run.status == plait.RunStatus.FAILED
    timed.retry(run.id)
    timed.run_until_idle()
    assert run.info().status == plait.RunStatus.WAITING
    run.send_event("paid", {"ok": True})
    assert run.result(timeout=30) == Paid(ok=True)


def test_timeout_and_skip_if_are_part_of_the_version_only_when_set() -> None:
    plain = plait.workflow("versioned", input=int).then(plus_one).commit()
    again = plait.workflow("versioned", input=int).then(plus_one).commit()
    limited = plait.workflow("versioned", input=int, timeout=5).then(plus_one).commit()
    assert plain.version == again.version != limited.version
    assert limited.to_dict()["timeout"] == 5
