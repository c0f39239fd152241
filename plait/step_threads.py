"""The threads that sync (``def``) steps run in, with a light hand-off to and from the event loop.

``loop.run_in_executor`` hands a call over through a ``concurrent.futures``
Future, its condition variable and a chained asyncio Future: about 80 µs per
call on the project's 2-core VM, as much as a third of a no-op step. Here a
call is one ``SimpleQueue.put`` and one ``call_soon_threadsafe`` back (about
25 µs). Threads are started on demand up to ``max_threads`` and then reused,
so that bound still caps how many sync steps run at once.
"""

from __future__ import annotations

import _thread
import asyncio
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Item = tuple[Callable[[], Any], asyncio.Future[Any]]

# The pool of each engine loop, so step code finds it from the running loop alone.
_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StepThreads] = weakref.WeakKeyDictionary()


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():  # the step timed out or its run was cancelled meanwhile: nobody waits for this
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class StepThreads:
    """Up to ``max_threads`` daemon threads running calls for one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str, max_threads: int) -> None:
        self._loop = loop
        self._name = name
        self._max = max_threads
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # one release per thread waiting for work
        self._threads: list[threading.Thread] = []
        self._closed = False
        _POOLS[loop] = self

    @staticmethod
    def of(loop: asyncio.AbstractEventLoop) -> StepThreads | None:
        """The pool serving ``loop``, if it has one."""
        return _POOLS.get(loop)

    async def run(self, call: Callable[[], T]) -> T:
        """Run ``call()`` in one of the threads and return (or raise) what it did."""
        if self._closed:
            raise RuntimeError("this plait.Engine is closed; create a new Engine to use it again")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put((call, future))
        if not self._idle.acquire(blocking=False) and len(self._threads) < self._max:
            thread = threading.Thread(target=self._work, name=f"{self._name}-step_{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            # Thread.start() waits until the new thread runs: about 1 ms on a busy 2-core machine, 64 times
            # over when a wave of runs starts at once. A throwaway thread waits for it instead of the loop.
            _thread.start_new_thread(thread.start, ())
        return await future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            call, future = item
            try:
                outcome: tuple[bool, Any] = (True, call())
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting step, which decides
                outcome = (False, exc)
            del item, call  # drop references to the step's values before idling
            try:
                self._loop.call_soon_threadsafe(_settle, future, *outcome)
            except RuntimeError:  # the loop closed while the call ran: its run is handed back anyway
                return
            del future, outcome
            self._idle.release()

    def close(self) -> None:
        """Let every thread end once its current call returns; queued calls are dropped."""
        self._closed = True
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        for _ in self._threads:
            self._queue.put(None)
