"""In-process listeners on the global event feed (``engine.subscribe``)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from plait.runs import Event
from plait.store.base import Store

log = logging.getLogger("plait.subscriptions")

Listener = Callable[[Event], Any] | Callable[[Event], Awaitable[Any]]


class Subscription:
    """Delivers matching events, in commit order, to one callback until ``close()``.

    A callback that raises is logged and the feed goes on; sync callbacks run
    in a thread so a slow one cannot stall the engine.
    """

    def __init__(
        self,
        store: Store,
        namespace: str,
        callback: Listener,
        types: Collection[str] | None,
        workflow: str | None,
        cursor: str | None,
        poll: float,
    ) -> None:
        self._store = store
        self._namespace = namespace
        self._callback = callback
        self._types = set(types) if types else None
        self._workflow = workflow
        self.cursor = cursor
        self._poll = poll
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def matches(self, event: Event) -> bool:
        if self._types is not None and event.type not in self._types:
            return False
        return self._workflow is None or event.workflow_id == self._workflow

    async def _run(self) -> None:
        while True:
            try:
                rows, self.cursor = await self._store.read_events(self._namespace, self.cursor, 500)
            except Exception as exc:  # noqa: BLE001 - an outage pauses the feed; it resumes from the cursor
                log.warning("plait subscription: reading events failed, retrying: %s", exc)
                rows = []
            for row in rows:
                event = Event.from_row(row)
                if self.matches(event):
                    await self._deliver(event)
            if not rows:
                await asyncio.sleep(self._poll)

    async def _deliver(self, event: Event) -> None:
        try:
            if inspect.iscoroutinefunction(self._callback):
                await self._callback(event)
            else:
                await asyncio.to_thread(self._callback, event)
        except asyncio.CancelledError:
            raise
        except BaseException:  # even SystemExit from a callback must not stop the engine's loop
            log.exception("plait subscription callback failed on event %s (%s)", event.id, event.type)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
