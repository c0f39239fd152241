"""Results that must not depend on sharing or on replay: parallel inputs, loop decisions, same-named waits."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

import plait
from plait.testing import FakeClock


@pytest.fixture
def engine(db_url: str) -> Iterator[plait.Engine]:
    clock = FakeClock(datetime(2030, 1, 1, tzinfo=UTC))
    with plait.Engine(db_url, clock=clock, poll_interval=0.05) as engine:
        yield engine


def settled(engine: plait.Engine, run: plait.RunHandle[object], status: plait.RunStatus) -> None:
    engine.run_until_idle()
    assert run.info().status == status


class Basket(BaseModel):
    items: list[int]


def test_each_parallel_branch_gets_its_own_copy_of_the_input(engine: plait.Engine) -> None:
    @plait.step
    async def add_item(basket: Basket) -> int:
        basket.items.append(99)  # a branch that mutates its input
        return len(basket.items)

    @plait.step
    async def count_items(basket: Basket) -> int:
        await asyncio.sleep(0.02)  # looks after its sibling has mutated
        return len(basket.items)

    @plait.step
    def original_size(ctx: plait.Context, pair: tuple[int, int]) -> int:
        workflow_input: Basket = ctx.workflow_input
        return len(workflow_input.items)

    flow = plait.workflow("baskets", input=Basket).parallel(add_item, count_items).commit()
    assert engine.start(flow, Basket(items=[1])).result(timeout=10) == (2, 1)
    seen = plait.workflow("baskets_input", input=Basket).parallel(add_item, count_items).then(original_size).commit()
    assert engine.start(seen, {"items": [1, 2]}).result(timeout=10) == 2


def test_a_loop_resumed_takes_the_live_runs_iterations_and_keeps_the_suspended_one(engine: plait.Engine) -> None:
    decisions: list[int] = []

    def enough(value: int) -> bool:
        # State outside the run: a replay that asks again gets another answer than the live run did.
        decisions.append(value)
        return len(decisions) >= 3

    class Answer(BaseModel):
        bump: int

    @plait.step(resume_schema=Answer)
    def refine(ctx: plait.Context, value: int) -> int:
        if value == 3 and ctx.resume_data is None:
            ctx.suspend({"question": "how much?"})
        return value + (ctx.resume_data.bump if ctx.resume_data else 1)

    flow = plait.workflow("refining", input=int).dountil(refine, enough).commit()
    run = engine.start(flow, 1)
    settled(engine, run, plait.RunStatus.SUSPENDED)  # iterations 1 and 2 ran, the third suspended
    assert decisions == [2, 3]
    run.resume("refine", {"bump": 10})
    assert run.result(timeout=10) == 13
    assert decisions == [2, 3, 13]  # asked once per live decision, never again on replay
    keys = [s.step_id for s in run.steps() if s.status == "succeeded"]
    assert keys.count("refine") == 4  # three iterations and the loop's recorded end


def test_a_loop_that_stopped_stays_stopped_after_the_run_parks(engine: plait.Engine) -> None:
    go_on = {"value": False}

    @plait.step
    def bump(value: int) -> int:
        return value + 1

    @plait.step
    def finish(ctx: plait.Context, value: int) -> int:
        return value * 100

    class Go(BaseModel):
        ok: bool

    flow = (
        plait.workflow("stopping", input=int)
        .dowhile(bump, lambda value: go_on["value"], max_iterations=5)
        .map(lambda value: value, output=int, id="keep")
        .wait_for_event("go", schema=Go)
        .map(lambda go: 0, output=int, id="after")
        .commit()
    )
    run = engine.start(flow, 1)
    settled(engine, run, plait.RunStatus.WAITING)
    go_on["value"] = True  # asked again on replay, the predicate would now loop to max_iterations and fail
    run.send_event("go", {"ok": True})
    assert run.result(timeout=10) == 0
    assert [s.step_id for s in run.steps()].count("bump") == 2  # one iteration and the loop's end
    assert [s.output for s in run.steps() if s.step_id == "keep"] == [2]


class Paid(BaseModel):
    amount: int


class Shipped(BaseModel):
    carrier: str


def test_two_waits_for_one_event_name_get_their_own_ids_and_schemas(engine: plait.Engine) -> None:
    flow = (
        plait.workflow("two_updates", input=str)
        .wait_for_event("update", schema=Paid)
        .wait_for_event("update", schema=Shipped)
        .commit()
    )
    assert [node["id"] for node in flow.to_dict()["nodes"]] == ["wait_update", "wait_update-2"]
    run = engine.start(flow, "order-1")
    settled(engine, run, plait.RunStatus.WAITING)
    with pytest.raises(plait.InputValidationError, match="wait_update"):
        run.send_event("update", {"carrier": "ups"})  # the first wait takes a Paid
    assert run.send_event("update", {"amount": 5}) is True
    with pytest.raises(plait.InputValidationError, match="wait_update-2"):
        run.send_event("update", {"amount": 7})  # the next one goes to the second wait
    assert run.send_event("update", {"carrier": "ups"}) is True
    assert run.result(timeout=10) == Shipped(carrier="ups")


def test_events_sent_ahead_are_checked_against_the_wait_each_will_reach(engine: plait.Engine) -> None:
    flow = (
        plait.workflow("ahead", input=str)
        .sleep(60)
        .wait_for_event("update", schema=Paid, id="paid")
        .wait_for_event("update", schema=Shipped, id="shipped")
        .commit()
    )
    run = engine.start(flow, "order-2")
    settled(engine, run, plait.RunStatus.WAITING)  # asleep: no wait reached yet
    assert run.send_event("update", {"amount": 5}) is True
    assert run.send_event("update", {"carrier": "dhl"}) is True
    with pytest.raises(plait.InputValidationError):
        run.send_event("update", {"amount": 1})  # both waits are spoken for: it would reach neither as a Paid
    assert isinstance(engine.clock, FakeClock)
    engine.clock.advance(seconds=61)
    assert run.result(timeout=10) == Shipped(carrier="dhl")
