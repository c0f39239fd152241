"""Live pages: one subscription to the event log per namespace, fanned out to every open tab over SSE.

However many tabs are open, the process reads the event log once (through
``engine.subscribe``); each tab gets a small JSON note per event and fetches
its page again when something it shows changed. The subscription stops when
the last tab closes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from plait.engine import Engine
from plait.runs import Event
from plait.subscriptions import Subscription

KEEPALIVE_SECONDS = 15.0


@dataclass
class Tab:
    queue: asyncio.Queue[str]
    loop: asyncio.AbstractEventLoop
    run_id: str | None


@dataclass
class Feed:
    engine: Engine
    tabs: list[Tab] = field(default_factory=list)
    subscription: Subscription | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def publish(self, event: Event) -> None:
        note = json.dumps(
            {"type": event.type, "run_id": event.run_id, "workflow_id": event.workflow_id, "step_id": event.step_id}
        )
        for tab in list(self.tabs):
            if tab.run_id is None or tab.run_id == event.run_id:
                tab.loop.call_soon_threadsafe(tab.queue.put_nowait, note)


class Hub:
    """The feeds of this app, one per namespace engine."""

    def __init__(self) -> None:
        self._feeds: dict[str, Feed] = {}

    async def stream(self, engine: Engine, run_id: str | None) -> AsyncIterator[str]:
        feed = self._feeds.setdefault(engine.namespace, Feed(engine))
        tab = Tab(asyncio.Queue(), asyncio.get_running_loop(), run_id)
        async with feed.lock:
            feed.tabs.append(tab)
            if feed.subscription is None:
                feed.subscription = await asyncio.to_thread(engine.subscribe, feed.publish)
        try:
            yield "retry: 2000\n\n"
            while True:
                try:
                    note = await asyncio.wait_for(tab.queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: change\ndata: {note}\n\n"
        finally:
            async with feed.lock:
                feed.tabs.remove(tab)
                if not feed.tabs and feed.subscription is not None:
                    subscription, feed.subscription = feed.subscription, None
                    await asyncio.to_thread(engine.unsubscribe, subscription)
