"""``start()`` answers once the run is durable, not once it ends; ``result()`` of a run this process just
ended answers from the worker's memory, and waits on the run's end without a trip through the loop."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from pydantic import BaseModel

import plait
import plait.worker

release = threading.Event()
entered = threading.Event()


class Total(BaseModel):
    value: int


@plait.step
async def hog(x: int) -> int:
    # Blocks the engine's loop without awaiting: only a start() that answered before this step can set it.
    entered.set()
    if not release.wait(20):
        raise RuntimeError("start() did not return while the step held the loop")
    return x + 1


@plait.step
async def busy_ms(x: int) -> int:
    stop = asyncio.get_running_loop().time() + 0.001
    while asyncio.get_running_loop().time() < stop:  # a millisecond of work, never awaiting
        pass
    return x + 1


@plait.step
async def total(x: int) -> Total:
    return Total(value=x * 2)


@plait.step
async def waits_for_release(x: int) -> int:
    while not release.is_set():
        await asyncio.sleep(0.01)
    return x


@pytest.fixture(autouse=True)
def _events() -> None:
    release.clear()
    entered.clear()


def test_start_returns_before_a_step_that_never_awaits_runs(db_url: str) -> None:
    flow = plait.workflow("hogging", input=int).then(hog).commit()
    with plait.Engine(db_url) as engine:
        handle = engine.start(flow, 1)
        release.set()  # had start() waited for the run, the step would have failed after 20 s
        assert handle.result(timeout=30) == 2
    assert entered.is_set()


def test_a_run_whose_steps_never_await_lets_other_calls_in_between_steps(db_url: str) -> None:
    builder = plait.workflow("long_chain", input=int)
    for i in range(300):
        builder = builder.then(busy_ms.with_options(id=f"s{i}"))
    flow = builder.commit()
    with plait.Engine(db_url) as engine:
        handle = engine.start(flow, 0)
        # Served on the loop between two steps, while the run goes on (it holds the loop >= 0.3 s).
        assert handle.info().status == "running"
        assert handle.result(timeout=60) == 300


def test_the_first_result_after_the_end_is_typed_and_needs_no_store_read(db_url: str) -> None:
    flow = plait.workflow("typed_total", input=int).then(total).commit()
    with plait.Engine(db_url) as engine:
        reads: list[str] = []
        get_run = engine._store.get_run

        async def counted(namespace: str, run_id: str) -> Any:
            reads.append(run_id)
            return await get_run(namespace, run_id)

        engine._store.get_run = counted  # type: ignore[method-assign]
        handle = engine.start(flow, 21)
        assert handle.result(timeout=30) == Total(value=42)
        assert reads == []  # handed over by the worker that ended the run
        assert handle.result(timeout=30) == Total(value=42)
        assert reads == [handle.id]  # later calls read the store, which stays the truth


def test_a_thread_waiting_in_result_wakes_with_the_run_s_end(db_url: str) -> None:
    flow = plait.workflow("released", input=int).then(waits_for_release).commit()
    with plait.Engine(db_url) as engine:
        handle = engine.start(flow, 7)
        for _ in range(3):
            with pytest.raises(plait.ResultTimeout):
                handle.result(timeout=0.1)  # still running: the wait ends with the timeout, the run goes on
        assert handle.id not in engine._worker._thread_waiters  # the timed-out waits left nothing behind
        answers: list[Any] = []
        waiter = threading.Thread(target=lambda: answers.append(handle.result(timeout=30)))
        waiter.start()
        release.set()
        waiter.join(30)
        assert answers == [7]


def test_a_cancelled_run_raises_and_a_retried_failure_is_not_remembered(db_url: str) -> None:
    attempts: list[int] = []

    @plait.step
    async def fails_once(x: int) -> int:
        attempts.append(x)
        if len(attempts) == 1:
            raise ValueError("first time")
        return x

    flow = plait.workflow("fails_once", input=int).then(fails_once).commit()
    cancelling = plait.workflow("cancel_me", input=int).then(waits_for_release).commit()
    with plait.Engine(db_url) as engine:
        handle = engine.start(flow, 5)
        with pytest.raises(plait.RunFailed):
            handle.result(timeout=30)
        engine.retry(handle.id)
        assert handle.result(timeout=30) == 5  # the failure was not kept: the retried run's end is read
        doomed = engine.start(cancelling, 1)
        engine.cancel(doomed.id, reason="not needed")
        with pytest.raises(plait.RunCancelled, match="not needed"):
            doomed.result(timeout=30)
        with pytest.raises(plait.RunCancelled, match="not needed"):
            doomed.result(timeout=30)


def test_the_worker_keeps_a_bounded_number_of_final_rows(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plait.worker, "SETTLED_RUNS", 2)
    flow = plait.workflow("many_ends", input=int).then(total).commit()
    with plait.Engine(db_url) as engine:
        handles = []
        for i in range(4):
            handles.append(engine.start(flow, i))
            deadline = time.monotonic() + 30
            while handles[-1].info().status != "succeeded":  # info() reads the store, it takes nothing
                assert time.monotonic() < deadline, "the run did not end"
                time.sleep(0.01)
        assert list(engine._worker._settled) == [handles[2].id, handles[3].id]
        assert [h.result(timeout=30) for h in handles] == [Total(value=2 * i) for i in range(4)]
        assert not engine._worker._settled
