"""The engine's own event loop, on a daemon thread, behind the sync and async APIs.

One loop owns the store connection, so sync callers, async callers on other
loops and the worker all reach the database from one thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from plait.step_threads import StepThreads

T = TypeVar("T")


class LoopThread:
    """An asyncio loop running on a background thread."""

    def __init__(self, name: str, max_threads: int) -> None:
        self.loop = asyncio.new_event_loop()
        # Sync steps run in these threads; their number bounds how many run at once.
        self.step_threads = StepThreads(self.loop, name, max_threads)
        # Anything else that blocks (``asyncio.to_thread``) gets the loop's default pool, of the same bound.
        self.loop.set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix=f"{name}-io")
        )
        # Calls waiting on the loop from other threads: closing the engine answers them (see ``stop``).
        self._waiting: set[concurrent.futures.Future[Any]] = set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def is_current(self) -> bool:
        return threading.current_thread() is self._thread

    def _check_open(self, coro: Coroutine[Any, Any, Any]) -> None:
        if self.loop.is_closed() or not self._thread.is_alive():
            coro.close()
            raise RuntimeError("this plait.Engine is closed; create a new Engine to use it again")

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and block until it returns."""
        self._check_open(coro)
        if self.is_current():
            coro.close()
            raise RuntimeError(
                "a blocking plait call was made on the engine's own event loop; use the async twin (await engine.a...)"
            )
        return self._submit(coro).result()

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the loop from any loop."""
        self._check_open(coro)
        if self.is_current():
            return await coro
        return await asyncio.wrap_future(self._submit(coro))

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; until it is done, ``stop`` answers its waiter if the loop goes."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        self._waiting.add(future)
        future.add_done_callback(self._waiting.discard)
        return future

    def call_soon(self, callback: Any) -> None:
        if not self.loop.is_closed():  # a fake clock may outlive the engine that listened to it
            self.loop.call_soon_threadsafe(callback)

    def stop(self) -> None:
        if self.is_current():
            raise RuntimeError("engine.close() cannot be called from inside a step; close it from outside")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():  # the loop is gone: a call still waiting on it would wait forever
            for waiting in list(self._waiting):
                if not waiting.done():
                    waiting.set_exception(
                        RuntimeError("this plait.Engine was closed while the call waited; create a new Engine")
                    )
        self.step_threads.close()  # sync steps cannot be interrupted; their results are refused by the fence anyway
        executor = getattr(self.loop, "_default_executor", None)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        if not self._thread.is_alive():
            self.loop.close()
