"""Every builder primitive, alone and combined, run on a real SQLite file."""

from __future__ import annotations

import asyncio
import threading

import pytest
from pydantic import BaseModel

import plait


class Order(BaseModel):
    id: int
    amount: float


class Priced(BaseModel):
    id: int
    total: float


@plait.step
def load(order_id: int) -> Order:
    return Order(id=order_id, amount=10.0 * order_id)


@plait.step
async def add_tax(order: Order) -> Priced:
    await asyncio.sleep(0)
    return Priced(id=order.id, total=round(order.amount * 1.2, 2))


@plait.step
def describe(ctx: plait.Context, priced: Priced) -> str:
    return f"{ctx.step_id}:{priced.id}:{priced.total}"


def test_then_chains_sync_async_and_context_steps(engine: plait.Engine) -> None:
    flow = plait.workflow("then_chain", input=int, output=str).then(load).then(add_tax).then(describe).commit()
    assert engine.start(flow, 3).result(timeout=10) == "describe:3:36.0"


def test_parallel_outputs_are_a_tuple_in_declaration_order(engine: plait.Engine) -> None:
    started = threading.Barrier(3, timeout=5)

    @plait.step
    def slow_first(x: int) -> int:
        started.wait()  # all three must be running at once, or this times out
        return x + 1

    @plait.step
    def middle(x: int) -> str:
        started.wait()
        return f"m{x}"

    @plait.step
    async def fast_last(x: int) -> float:
        await asyncio.to_thread(started.wait)
        return x / 2

    flow = plait.workflow("fan", input=int).parallel(slow_first, middle, fast_last).commit()
    assert engine.start(flow, 4).result(timeout=10) == (5, "m4", 2.0)


def test_branch_takes_first_matching_case_then_default(engine: plait.Engine) -> None:
    @plait.step
    def big(x: int) -> str:
        return "big"

    @plait.step
    def small(x: int) -> str:
        return "small"

    @plait.step
    def zero(x: int) -> str:
        return "zero"

    flow = (
        plait.workflow("branching", input=int)
        .branch((lambda x: x > 100, big), (lambda x: x > 0, small), default=zero)
        .commit()
    )
    assert [engine.start(flow, v).result(timeout=10) for v in (500, 5, -1)] == ["big", "small", "zero"]
    run = engine.start(flow, 7)
    run.result(timeout=10)
    assert [s.step_id for s in run.steps()] == ["small"]


def test_branch_without_match_or_default_fails_clearly(engine: plait.Engine) -> None:
    @plait.step
    def never(x: int) -> int:
        return x

    flow = plait.workflow("nomatch", input=int).branch((lambda x: x < 0, never)).commit()
    with pytest.raises(plait.RunFailed, match="no predicate matched"):
        engine.start(flow, 1).result(timeout=10)


def test_branch_predicate_can_take_context(engine: plait.Engine) -> None:
    @plait.step
    def yes(x: int) -> str:
        return "yes"

    @plait.step
    def no(x: int) -> str:
        return "no"

    def from_input(ctx: plait.Context, value: int) -> bool:
        return bool(ctx.workflow_input == value)

    flow = plait.workflow("ctxpred", input=int).branch((from_input, yes), default=no).commit()
    assert engine.start(flow, 2).result(timeout=10) == "yes"


def test_map_transforms_and_is_checkpointed(engine: plait.Engine) -> None:
    def double(order: Order) -> int:
        return int(order.amount * 2)

    flow = plait.workflow("mapping", input=int).then(load).map(double).map(lambda n: [n, n + 1], output=list[int])
    run = engine.start(flow.commit(), 2)
    assert run.result(timeout=10) == [40, 41]
    assert [(s.step_id, s.output) for s in run.steps()] == [
        ("load", {"id": 2, "amount": 20.0}),
        ("double", 40),
        ("map_3", [40, 41]),
    ]


def test_foreach_keeps_input_order_and_respects_concurrency(engine: plait.Engine) -> None:
    lock = threading.Lock()
    running = 0
    peak = 0

    @plait.step
    async def square(x: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        await asyncio.sleep(0.01 * (5 - x % 5))  # later items finish first
        with lock:
            running -= 1
        return x * x

    flow = plait.workflow("squares", input=list[int]).foreach(square, concurrency=3).commit()
    run = engine.start(flow, list(range(10)))
    assert run.result(timeout=10) == [x * x for x in range(10)]
    assert peak == 3
    assert sorted(s.key for s in run.steps()) == sorted(f"square[{i}]" for i in range(10))


def test_foreach_of_empty_list_gives_empty_list(engine: plait.Engine) -> None:
    @plait.step
    def inc(x: int) -> int:
        return x + 1

    flow = plait.workflow("empty_each", input=list[int]).foreach(inc).commit()
    assert engine.start(flow, []).result(timeout=10) == []


def test_dowhile_and_dountil_feed_each_output_to_the_next_iteration(engine: plait.Engine) -> None:
    @plait.step
    def grow(x: int) -> int:
        return x * 2

    while_flow = plait.workflow("grow_while", input=int).dowhile(grow, lambda x: x < 100).commit()
    until_flow = plait.workflow("grow_until", input=int).dountil(grow.with_options(id="grow2"), lambda x: x >= 100)
    assert engine.start(while_flow, 3).result(timeout=10) == 192
    run = engine.start(until_flow.commit(), 3)
    assert run.result(timeout=10) == 192
    steps = run.steps()
    assert [s.key for s in steps] == [*(f"grow2#{i}" for i in range(1, 7)), "grow2"]
    assert (steps[-1].input, steps[-1].output) == ({"iterations": 6}, 192)  # the loop's checkpointed end


def test_loop_stops_at_max_iterations_with_clear_error(engine: plait.Engine) -> None:
    @plait.step
    def same(x: int) -> int:
        return x

    flow = plait.workflow("forever", input=int).dowhile(same, lambda x: True, max_iterations=5).commit()
    with pytest.raises(plait.RunFailed, match="max_iterations=5"):
        engine.start(flow, 1).result(timeout=10)


def test_child_workflow_runs_as_its_own_linked_run(engine: plait.Engine) -> None:
    child = plait.workflow("price", input=int).then(load).then(add_tax).commit()
    parent = plait.workflow("checkout", input=int).then(child).then(describe).commit()
    run = engine.start(parent, 5)
    assert run.result(timeout=10) == "describe:5:60.0"
    children = engine.list_runs(workflow="price").items
    assert len(children) == 1
    assert children[0].parent_run_id == run.id
    assert children[0].status == plait.RunStatus.SUCCEEDED
    assert [s.step_id for s in engine.get_run(children[0].id).steps()] == ["load", "add_tax"]
    assert [s.step_id for s in run.steps()] == ["price", "describe"]


def test_combined_pipeline(engine: plait.Engine) -> None:
    @plait.step
    def split(text: str) -> list[str]:
        return text.split()

    @plait.step
    async def measure(word: str) -> int:
        return len(word)

    @plait.step
    def total(lengths: list[int]) -> int:
        return sum(lengths)

    @plait.step
    def longest(lengths: list[int]) -> int:
        return max(lengths)

    @plait.step
    def halve(x: int) -> int:
        return x // 2

    flow = (
        plait.workflow("combined", input=str)
        .then(split)
        .foreach(measure, concurrency=4)
        .parallel(total, longest)
        .map(lambda pair: pair[0] * 10 + pair[1], output=int)
        .dowhile(halve, lambda x: x > 10)
        .branch((lambda x: x % 2 == 0, halve.with_options(id="even")), default=halve.with_options(id="odd"))
        .commit()
    )
    # lengths [5,5,3,7] -> total 20, longest 7 -> 207 -> 103 -> 51 -> 25 -> 12 -> 6 -> 3
    assert engine.start(flow, "plait makes the workflow").result(timeout=10) == 3
