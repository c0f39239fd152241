"""Sync steps' threads: results and errors come back, at most ``max_threads`` run at once, closed means closed."""

from __future__ import annotations

import asyncio
import threading

import pytest

from plait.step_threads import StepThreads


def test_calls_run_in_named_threads_and_return_or_raise() -> None:
    async def main() -> None:
        threads = StepThreads(asyncio.get_running_loop(), "t", max_threads=2)
        assert StepThreads.of(asyncio.get_running_loop()) is threads
        name = await threads.run(lambda: threading.current_thread().name)
        assert name.startswith("t-step_") and name != threading.current_thread().name

        def boom() -> None:
            raise KeyError("nope")

        with pytest.raises(KeyError, match="nope"):
            await threads.run(boom)
        threads.close()
        with pytest.raises(RuntimeError, match="closed"):
            await threads.run(lambda: 1)

    asyncio.run(main())


def test_no_more_than_max_threads_calls_run_at_once() -> None:
    running = 0
    most = 0
    lock = threading.Lock()
    arrived = threading.Semaphore(0)
    gate = threading.Event()

    def work() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        arrived.release()
        gate.wait(timeout=10)
        with lock:
            running -= 1

    async def main() -> None:
        threads = StepThreads(asyncio.get_running_loop(), "bounded", max_threads=3)
        calls = [asyncio.ensure_future(threads.run(work)) for _ in range(8)]
        for _ in range(3):  # three calls hold all three threads...
            assert await asyncio.to_thread(arrived.acquire, timeout=10)
        assert not arrived.acquire(timeout=0.05)  # ...and a fourth cannot start while they do
        gate.set()
        await asyncio.gather(*calls)
        threads.close()

    asyncio.run(main())
    assert most == 3


def test_a_cancelled_wait_leaves_the_thread_usable() -> None:
    release = threading.Event()

    async def main() -> None:
        threads = StepThreads(asyncio.get_running_loop(), "cancel", max_threads=1)
        slow = asyncio.ensure_future(threads.run(lambda: release.wait(timeout=10)))
        await asyncio.sleep(0)
        slow.cancel()  # a step timeout: the call runs on, its result is dropped
        release.set()
        assert await threads.run(lambda: 42) == 42
        threads.close()

    asyncio.run(main())
