"""Claims and time: a worker may claim a run due soon and read its state early, but its next step
starts only once it is due; runs of limited queues are never claimed before they are due; a claim
that commits after one stamped later still keeps its queue's rate limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

import plait
from plait.queues import Queue
from plait.store import open_store
from plait.store.base import NewRun
from plait.testing import FakeClock

START = datetime(2030, 1, 1, tzinfo=UTC)
DUE = START + timedelta(seconds=30)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def engine(db_url: str, clock: FakeClock) -> Iterator[plait.Engine]:
    with plait.Engine(db_url, clock=clock, poll_interval=0.05) as engine:
        yield engine


def wait_for_status(run: plait.RunHandle[object], status: plait.RunStatus) -> None:
    """Poll (real time) until the worker has moved the run to ``status``."""
    deadline = time.monotonic() + 10
    while run.info().status != status:
        assert time.monotonic() < deadline, f"run {run.id} stayed {run.info().status}, expected {status}"
        time.sleep(0.01)


def test_a_run_claimed_ahead_starts_its_next_step_only_once_due(engine: plait.Engine, clock: FakeClock) -> None:
    started_at: list[datetime] = []

    @plait.step
    def stamp(x: int) -> int:
        started_at.append(clock.now())
        return x + 1

    # The real clock claims 50 ms ahead; here a fake clock claims a minute ahead to see it happen.
    engine._worker._claim_ahead = 60.0
    flow = plait.workflow("ahead", input=int).sleep_until(DUE).then(stamp).commit()
    run = engine.start(flow, 1)
    wait_for_status(run, plait.RunStatus.RUNNING)  # claimed ahead, held until due
    time.sleep(0.1)  # the worker is given every chance to start the step early (the clock stands still)
    assert started_at == []
    clock.advance(seconds=29)
    time.sleep(0.1)
    assert started_at == []
    assert run.info().status == plait.RunStatus.RUNNING
    clock.advance(seconds=1)
    assert run.result(timeout=10) == 2
    assert started_at == [DUE]
    # The log says the timer fired when it was due, not when the run was claimed.
    fired = [e for e in run.events(follow=False) if e.type in ("timer.fired", "run.resumed")]
    assert [(e.type, e.created_at) for e in fired] == [("timer.fired", DUE), ("run.resumed", DUE)]


def test_a_claim_ahead_takes_runs_of_limited_queues_only_once_due(db_url: str) -> None:
    async def scenario() -> None:
        store = open_store(db_url)
        await store.migrate()
        await store.register_queues([Queue("slow", concurrency=5)])
        base = NewRun(
            id="free", namespace="default", workflow_id="w", workflow_version="v", input="1",
            created_at=1.0, ready_at=20.0,
        )  # fmt: skip
        await store.create_run(base)
        await store.create_run(replace(base, id="limited", queue="slow"))
        claimed = await store.claim_runs("default", "me:1:1", ["w@v"], 10.0, 10.0, 1e12, 10, ready_by=30.0)
        assert [r.id for r in claimed] == ["free"]
        claimed = await store.claim_runs("default", "me:1:1", ["w@v"], 20.0, 20.0, 1e12, 10, ready_by=30.0)
        assert [r.id for r in claimed] == ["limited"]
        await store.close()

    asyncio.run(scenario())


def test_a_claim_whose_clock_was_read_before_a_later_claim_still_counts_every_start_in_its_window(db_url: str) -> None:
    # Workers read their clock before they wait for a pooled connection and the queue's lock, so a
    # claim may commit after one stamped later. Its count must still see the starts that the later
    # claim already left behind its own window: else more than the limit start within one period.
    async def scenario() -> None:
        store = open_store(db_url)
        await store.migrate()
        await store.register_queues([Queue("rated", rate_limit=(4, 1.0))])
        base = NewRun(
            id="", namespace="default", workflow_id="w", workflow_version="v", input="1",
            created_at=0.0, ready_at=0.0, queue="rated",
        )  # fmt: skip
        for run_id in ("a1", "a2", "b", "x", "c1", "c2"):
            await store.create_run(replace(base, id=run_id))
        started: list[float] = []
        for run_id, now in (("a1", 0.95), ("a2", 0.95), ("b", 1.5), ("x", 2.0), ("c1", 1.9), ("c2", 1.9)):
            claimed = await store.claim_runs("default", "me:1:1", ["w@v"], now, now, 1e12, 1, run_id=run_id)
            started += [r.started_at for r in claimed if r.started_at is not None]
        busiest = max(sum(1 for t in started if s <= t < s + 1.0) for s in started)
        assert busiest <= 4, sorted(started)
        assert sorted(started) == [0.95, 0.95, 1.5, 2.0]  # c1 and c2 wait: 0.95 to 1.95 is full
        await store.close()

    asyncio.run(scenario())


def test_a_step_refused_by_a_rate_limit_is_told_when_the_oldest_start_in_the_window_leaves_it(db_url: str) -> None:
    async def scenario() -> None:
        store = open_store(db_url)
        await store.migrate()
        await store.register_queues([Queue("api", rate_limit=(2, 1.0))])
        assert await store.acquire_slot("api", "h0", "r0", 9.0, 9.0, 1e12) is None
        assert await store.acquire_slot("api", "h1", "r1", 10.0, 10.0, 1e12) is None
        assert await store.acquire_slot("api", "h2", "r2", 10.2, 10.2, 1e12) is None
        # The start at 9.0 is kept for late claims, but it left the window: the wait is until 10.0 leaves it.
        assert await store.acquire_slot("api", "h3", "r3", 10.5, 10.5, 1e12) == pytest.approx(0.5)
        assert await store.acquire_slot("api", "h3", "r3", 11.1, 11.1, 1e12) is None
        await store.close()

    asyncio.run(scenario())
