"""A run whose code is done gives its slot of ``concurrency`` up while its end commits: the next run starts
without waiting for that commit (a wave of timers ends and the next wave starts together)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import plait

started: list[int] = []
second_started = threading.Event()


@plait.step
def note(x: int) -> int:
    started.append(x)
    if x == 2:
        second_started.set()
    return x


def test_the_next_run_starts_while_the_previous_one_commits_its_end(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    started.clear()
    second_started.clear()
    flow = plait.workflow("slots", input=int).then(note).commit()
    with plait.Engine(db_url, concurrency=1, poll_interval=0.05) as engine:
        store = engine._worker.store
        finish_run = store.finish_run
        held: list[str] = []
        seen_while_held: list[bool] = []

        async def finish_after_the_next_run_started(*args: Any, **kwargs: Any) -> None:
            if not held:  # the first run's end waits (without blocking the loop) until run 2's step ran
                held.append(args[0].run_id)
                for _ in range(500):
                    if second_started.is_set():
                        break
                    await engine._worker.clock.sleep(0.01)
                seen_while_held.append(second_started.is_set())
            await finish_run(*args, **kwargs)

        monkeypatch.setattr(store, "finish_run", finish_after_the_next_run_started)
        first = engine.start(flow, 1)
        second = engine.start(flow, 2)
        assert first.result(timeout=30) == 1
        assert second.result(timeout=30) == 2
    assert held == [first.id]
    assert seen_while_held == [True]  # run 2 started before run 1's end was committed
    assert second_started.is_set() and started == [1, 2]
