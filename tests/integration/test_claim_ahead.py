"""Claiming ahead: a worker may claim a run due soon and read its state early, but its next step
starts only once it is due; runs of limited queues are never claimed before they are due."""

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
