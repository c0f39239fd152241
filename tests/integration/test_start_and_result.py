"""``start()`` answers once the run is durable, not once it ends; a thread waiting in ``result()`` on a run
this process executes gets the run's final row from its end, without a trip through the loop; nothing is
kept for later calls, which read the store."""

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


def _wait_ended(engine: plait.Engine, run_id: str) -> None:
    """Wait (bounded) until the run has ended, without calling result()."""
    deadline = time.monotonic() + 30
    while engine.get_run(run_id).status not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.01)


def test_a_waiting_result_gets_the_end_without_a_store_read_and_later_ones_read_it(db_url: str) -> None:
    flow = plait.workflow("typed_total", input=int).then(waits_for_release).then(total).commit()
    with plait.Engine(db_url) as engine:
        reads: list[str] = []
        get_run = engine._store.get_run

        async def counted(namespace: str, run_id: str) -> Any:
            reads.append(run_id)
            return await get_run(namespace, run_id)

        engine._store.get_run = counted  # type: ignore[method-assign]
        handle = engine.start(flow, 21)
        threading.Timer(0.05, release.set).start()  # the run ends while result() waits
        assert handle.result(timeout=30) == Total(value=42)
        assert reads == []  # handed over by the run's end
        assert handle.result(timeout=30) == Total(value=42)
        assert reads == [handle.id]  # nothing kept: later calls read the store


@pytest.mark.parametrize("call", ["sync", "async"])
def test_a_run_id_reused_after_prune_gives_the_new_run_s_result(db_url: str, call: str) -> None:
    first = plait.workflow("first", input=int).then(total).commit()
    second = plait.workflow("second", input=int).then(hog).commit()
    release.set()
    with plait.Engine(db_url) as engine:
        old = engine.start(first, 1, run_id="order-1")
        _wait_ended(engine, old.id)  # nobody asked for its result
        time.sleep(0.01)  # its finished_at strictly before prune's cutoff (not a plait timer)
        assert engine.prune(0) == 1
        with pytest.raises(plait.RunNotFound):
            old.result(timeout=5)
        new = engine.start(second, 5, run_id="order-1")
        got = new.result(timeout=30) if call == "sync" else asyncio.run(new.aresult(timeout=30))
        assert got == 6


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


def test_a_blocking_result_on_the_engine_s_loop_raises_every_time(db_url: str) -> None:
    target = plait.workflow("target", input=int).then(total).commit()
    seen: list[str] = []

    @plait.step
    async def calls_blocking_result(run_id: str) -> str:
        try:
            return f"value {plait.RunHandle(engine, run_id).result(timeout=5)}"
        except RuntimeError:
            return "RuntimeError"

    reader = plait.workflow("reader", input=str).then(calls_blocking_result).commit()
    with plait.Engine(db_url) as engine:
        done = engine.start(target, 5)
        _wait_ended(engine, done.id)
        seen.append(engine.start(reader, done.id).result(timeout=30))
        seen.append(engine.start(reader, done.id).result(timeout=30))
    assert seen == ["RuntimeError", "RuntimeError"]


def test_closing_the_engine_answers_a_thread_waiting_in_result(db_url: str) -> None:
    flow = plait.workflow("closing", input=int).then(waits_for_release).commit()
    engine = plait.Engine(db_url, shutdown_grace=0.2)
    run = engine.start(flow, 1)
    outcome: list[BaseException | int] = []

    def wait() -> None:
        try:
            outcome.append(run.result())
        except BaseException as exc:  # noqa: BLE001 - whatever it raises, it must return
            outcome.append(exc)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    deadline = time.monotonic() + 30
    while run.id not in engine._worker._thread_waiters:  # the thread waits for the run's end
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        engine.close()
        waiter.join(30)
        assert not waiter.is_alive(), "result() still blocked after engine.close()"
        assert len(outcome) == 1 and isinstance(outcome[0], RuntimeError) and "closed" in str(outcome[0])
    finally:
        release.set()


answered = threading.Event()


@plait.step
async def holds_loop_until_answered(x: int) -> str:
    # Never awaits: holds the engine's loop until the client has its POST answer (at most 20 s).
    return "saw the answer" if answered.wait(20) else "run ended before the POST answered"


def test_http_start_answers_before_a_step_that_never_awaits_ends(db_url: str) -> None:
    import httpx

    from plait.http import create_app
    from tests.e2e.servers import serving

    answered.clear()
    flow = plait.workflow("hogging_http", input=int).then(holds_loop_until_answered).commit()
    with plait.Engine(db_url) as engine:
        engine.register(flow)
        with serving(create_app(engine)) as url, httpx.Client(base_url=url, timeout=30) as client:
            response = client.post("/api/workflows/hogging_http/runs", json={"input": 1})
            answered.set()
            assert response.status_code == 201, response.text
            assert response.json()["status"] in ("pending", "running")
            assert engine.get_run(response.json()["id"]).result(timeout=30) == "saw the answer"
