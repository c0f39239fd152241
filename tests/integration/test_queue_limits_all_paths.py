"""Queue limits hold for every way a run comes into being and every way it is claimed.

A default engine (worker=True) hands a run it creates straight to its own
worker; child runs are claimed by the worker that creates them; reruns,
schedule fires and completion triggers create runs of their own. Each must
carry the run's queue and concurrency key, and each claim must respect them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

import plait
from plait.testing import FakeClock
from tests.conftest import run_sql

# How long a step holds its slot: long enough that runs claimed together overlap.
HOLD_SECONDS = 0.1


class Order(BaseModel):
    customer: str
    n: int


class Overlap:
    """Counts how many steps run at once (threads of the engine's pool)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.calls = 0

    def hold(self) -> None:
        with self._lock:
            self.now += 1
            self.calls += 1
            self.peak = max(self.peak, self.now)
        threading.Event().wait(HOLD_SECONDS)  # the step's own work, so that runs claimed together overlap
        with self._lock:
            self.now -= 1


@pytest.fixture
def overlap() -> Iterator[Overlap]:
    yield Overlap()


def solo_flow(overlap: Overlap, name: str = "solo") -> plait.Workflow[int, int]:
    @plait.step(id=f"{name}_work")
    def work(n: int) -> int:
        overlap.hold()
        return n

    queue = plait.Queue(f"{name}_q", concurrency=1)
    return plait.workflow(name, input=int, output=int, queue=queue).then(work).commit()


def keyed_flow(overlap: Overlap) -> plait.Workflow[Order, int]:
    @plait.step
    def serve(order: Order) -> int:
        overlap.hold()
        return order.n

    queue = plait.Queue("per_customer", key_concurrency=1)
    return (
        plait.workflow("invoice", input=Order, output=int, queue=queue, concurrency_key=lambda o: o.customer)
        .then(serve)
        .commit()
    )


def test_concurrency_one_holds_for_runs_a_worker_engine_starts(engine: plait.Engine, overlap: Overlap) -> None:
    flow = solo_flow(overlap)
    runs = [engine.start(flow, n) for n in range(5)]
    assert [run.result(timeout=30) for run in runs] == list(range(5))
    assert overlap.calls == 5
    assert overlap.peak == 1


def test_key_concurrency_one_holds_for_runs_a_worker_engine_starts(engine: plait.Engine, overlap: Overlap) -> None:
    flow = keyed_flow(overlap)
    runs = [engine.start(flow, Order(customer="acme", n=n)) for n in range(5)]
    assert [run.result(timeout=30) for run in runs] == list(range(5))
    assert overlap.peak == 1


def test_child_runs_in_a_limited_queue_take_their_turn(engine: plait.Engine, overlap: Overlap) -> None:
    child = solo_flow(overlap, "child")
    parent = plait.workflow("parent", input=list[int]).foreach(child, concurrency=5).commit()
    assert engine.start(parent, [1, 2, 3, 4, 5]).result(timeout=30) == [1, 2, 3, 4, 5]
    assert overlap.calls == 5
    assert overlap.peak == 1


def stored_placement(db_url: str, run_id: str) -> tuple[str | None, str | None]:
    rows = run_sql(db_url, "SELECT queue, concurrency_key FROM plait_runs WHERE id = ?", (run_id,))
    return rows[0][0], rows[0][1]


def test_rerun_from_keeps_the_queue_and_the_key(engine: plait.Engine, db_url: str, overlap: Overlap) -> None:
    flow = keyed_flow(overlap)
    source = engine.start(flow, Order(customer="acme", n=1))
    assert source.result(timeout=30) == 1
    reruns = [engine.rerun_from(source.id, "serve") for _ in range(4)]
    assert [run.result(timeout=30) for run in reruns] == [1, 1, 1, 1]
    for run in reruns:
        assert stored_placement(db_url, run.id) == ("per_customer", "acme")
    assert overlap.peak == 1


def test_completion_triggers_and_schedules_carry_the_key(db_url: str, overlap: Overlap) -> None:
    clock = FakeClock(datetime(2025, 1, 6, 8, 59, tzinfo=UTC))
    invoice = keyed_flow(overlap)

    @plait.step
    def place(n: int) -> int:
        return n

    ordering = plait.workflow("ordering", input=int, output=int).then(place).commit()
    with plait.Engine(db_url, clock=clock) as engine:
        engine.on_complete(ordering, start=invoice, input_from=lambda run: Order(customer="acme", n=run.output))
        engine.schedule(invoice, cron="0 9 * * *", input=Order(customer="globex", n=7), id="daily")
        assert engine.start(ordering, 3).result(timeout=30) == 3
        clock.advance(minutes=2)
        engine.run_until_idle()
        runs = engine.list_runs(workflow="invoice").items
        assert sorted(stored_placement(db_url, run.id) for run in runs) == [
            ("per_customer", "acme"),
            ("per_customer", "globex"),
        ]
