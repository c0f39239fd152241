"""Engine methods for what runs tell the world: the event feed, subscriptions, webhooks and retention."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from plait.clock import to_seconds
from plait.errors import InputValidationError, RunNotFound
from plait.ids import new_run_id
from plait.runs import Event, EventPage
from plait.store import webhooks as webhook_table
from plait.store.base import RunRow
from plait.subscriptions import Listener, Subscription
from plait.webhooks import DeadLetter, Webhook, WebhookDispatcher
from plait.workflow.graph import Workflow

# Cursors the stores hand out: "<id>" (SQLite) or "<transaction>:<id>" (PostgreSQL), each a 64-bit integer.
_CURSOR = re.compile(r"[0-9]{1,19}(:[0-9]{1,19})?")


def checked_cursor(cursor: object) -> str | None:
    """``cursor`` if it has the shape of an event-feed cursor, else InputValidationError."""
    if cursor is None:
        return None
    if isinstance(cursor, str) and _CURSOR.fullmatch(cursor) and all(int(p) < 2**63 for p in cursor.split(":")):
        return cursor
    shown = repr(cursor)[:40]
    raise InputValidationError(
        f"{shown} is not an event-feed cursor; pass the cursor of a previous page of engine.events(), or None"
    )


if TYPE_CHECKING:
    from plait.clock import Clock
    from plait.loop_thread import LoopThread
    from plait.store.base import Store
    from plait.worker import Worker


class FeedsMixin:
    """Part of ``Engine``: reading the event log, listening to it, webhooks, and pruning."""

    # Provided by Engine.
    _loop: LoopThread
    _store: Store
    _worker: Worker
    namespace: str
    clock: Clock
    _dispatcher: WebhookDispatcher
    _subscriptions: list[Subscription]

    async def _get_row(self, run_id: str) -> RunRow:
        raise NotImplementedError

    def _lookup(self, workflow_id: str, version: str | None) -> Workflow[Any, Any] | None:
        raise NotImplementedError

    def events(self, after: str | None = None, *, limit: int = 100) -> EventPage:
        """The namespace's event feed in commit order, after ``after`` (a cursor from a previous page).

        Keep the returned ``cursor`` to resume after a restart: no event is
        skipped or repeated.
        """
        return self._loop.run(self._events(after, limit))

    async def aevents(self, after: str | None = None, *, limit: int = 100) -> EventPage:
        return await self._loop.run_async(self._events(after, limit))

    async def _events(self, after: str | None, limit: int) -> EventPage:
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
            raise InputValidationError("limit must be between 1 and 1000")
        try:
            rows, cursor = await self._store.read_events(self.namespace, checked_cursor(after), limit)
        except (ValueError, OverflowError) as exc:  # a cursor of the other backend's shape
            raise InputValidationError(f"{after!r:.40} is not a cursor of this engine's store: {exc}") from exc
        return EventPage(items=[Event.from_row(row) for row in rows], cursor=cursor)

    def subscribe(
        self,
        callback: Listener,
        *,
        types: Collection[str] | None = None,
        workflow: Workflow[Any, Any] | str | None = None,
        after: str | None = "now",
    ) -> Subscription:
        """Call ``callback(event)`` for every new event (of ``types``, of ``workflow``) in this process.

        ``after="now"`` (default) starts with events committed from now on;
        a cursor resumes there, None replays the whole log. Sync callbacks run
        in a thread; one that raises is logged and never breaks a run.
        """
        workflow_id = workflow.id if isinstance(workflow, Workflow) else workflow

        async def start() -> Subscription:
            cursor = await self._store.events_head(self.namespace) if after == "now" else checked_cursor(after)
            subscription = Subscription(self._store, self.namespace, callback, types, workflow_id, cursor, 0.05)
            subscription.start()
            self._subscriptions.append(subscription)
            return subscription

        return self._loop.run(start())

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop a subscription."""
        self._loop.run(subscription.stop())

    def prune(self, older_than: timedelta | float) -> int:
        """Delete runs that ended more than ``older_than`` ago, with their steps, waits, events and artifacts.

        Runs still pending, running or waiting are never touched. Returns how many runs were deleted.
        """
        return self._loop.run(self._prune(older_than))

    async def aprune(self, older_than: timedelta | float) -> int:
        return await self._loop.run_async(self._prune(older_than))

    async def _prune(self, older_than: timedelta | float) -> int:
        seconds = to_seconds(older_than)
        if seconds < 0:
            raise InputValidationError("prune(older_than=...) must not be negative")
        cutoff = self.clock.now().timestamp() - seconds
        total = 0
        while deleted := await self._store.prune(self.namespace, cutoff, 500):  # in batches: short transactions
            total += deleted
        # Then the blobs no artifact refers to any more: those of deleted runs, and orphans of failed attempts.
        await self._worker.artifacts.sweep()
        return total

    # -- webhooks ------------------------------------------------------------

    def add_webhook(
        self,
        url: str,
        secret: str,
        *,
        event_types: Collection[str] | None = None,
        workflows: Collection[Workflow[Any, Any] | str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: timedelta | float | None = None,
    ) -> Webhook:
        """POST this namespace's events from now on to ``url``, signed with ``secret`` (HMAC-SHA256).

        Stored in the database: any worker of the namespace delivers (one at a
        time). Failed deliveries retry with back-off, then go to ``dead_letters()``.
        ``headers`` are sent with every delivery (plait's own headers win; only
        their names are ever shown); ``timeout`` bounds each delivery (default 10 s).
        ``pause_webhook`` holds deliveries back until ``resume_webhook``.
        """
        if not url.startswith(("http://", "https://")):
            raise InputValidationError(f"webhook url must start with http:// or https://, got {url!r}")
        if len(secret) < 16:
            raise InputValidationError("webhook secret must be at least 16 characters; generate a random one")
        extra = _check_headers(headers)
        seconds = None if timeout is None else to_seconds(timeout)
        if seconds is not None and not 0 < seconds <= 600:
            raise InputValidationError(f"webhook timeout must be between 0 and 600 seconds, got {seconds:g}")
        names = sorted({w.id if isinstance(w, Workflow) else w for w in workflows}) if workflows else None
        types = sorted(event_types) if event_types else None
        return self._loop.run(self._add_webhook(url, secret, types, names, extra, seconds))

    def pause_webhook(self, webhook_id: str) -> None:
        """Hold this webhook's deliveries: events wait (they are not dead-lettered) until ``resume_webhook``."""
        self._set_webhook_paused(webhook_id, True)

    def resume_webhook(self, webhook_id: str) -> None:
        """Deliver again, starting with the events that waited while paused."""
        self._set_webhook_paused(webhook_id, False)

    def _set_webhook_paused(self, webhook_id: str, paused: bool) -> None:
        if not self._loop.run(webhook_table.set_paused(self._store, self.namespace, webhook_id, paused)):
            raise RunNotFound(f"no webhook {webhook_id!r} in namespace '{self.namespace}'; see engine.webhooks()")

    async def _add_webhook(
        self,
        url: str,
        secret: str,
        event_types: list[str] | None,
        workflows: list[str] | None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Webhook:
        row = webhook_table.WebhookRow(
            id=f"wh_{new_run_id()}",
            namespace=self.namespace,
            url=url,
            secret=secret,
            event_types=event_types,
            workflows=workflows,
            cursor=await self._store.events_head(self.namespace),
            created_at=self.clock.now().timestamp(),
            headers=headers,
            timeout=timeout,
        )
        await webhook_table.add_webhook(self._store, row)
        return Webhook.from_row(row)

    def webhooks(self) -> list[Webhook]:
        """This namespace's webhooks (their secrets are never shown)."""
        rows = self._loop.run(webhook_table.list_webhooks(self._store, self.namespace))
        return [Webhook.from_row(row) for row in rows]

    def remove_webhook(self, webhook_id: str) -> bool:
        """Stop a webhook; False if there was no such webhook."""
        return self._loop.run(webhook_table.remove_webhook(self._store, self.namespace, webhook_id))

    def dead_letters(self, webhook_id: str | None = None) -> list[DeadLetter]:
        """Deliveries that failed every retry and were not replayed yet."""
        rows = self._loop.run(webhook_table.list_dead_letters(self._store, self.namespace, webhook_id))
        return [DeadLetter.from_row(row) for row in rows]

    def replay_dead_letters(self, ids: Collection[int] | None = None) -> int:
        """Send dead-lettered events again (all, or those ``ids``); returns how many went through."""
        return self._loop.run(self._replay(ids))

    async def _replay(self, ids: Collection[int] | None) -> int:
        hooks = {h.id: h for h in await webhook_table.list_webhooks(self._store, self.namespace)}
        delivered = 0
        for letter in await webhook_table.list_dead_letters(self._store, self.namespace, None):
            hook = hooks.get(letter.webhook_id)
            if (ids is not None and letter.id not in ids) or hook is None:
                continue
            row = await webhook_table.read_event(self._store, letter.event_id)
            if row is None or await self._dispatcher.deliver(hook, Event.from_row(row)):
                continue
            await webhook_table.mark_replayed(self._store, letter.id, self.clock.now().timestamp())
            delivered += 1
        return delivered


def _check_headers(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    if not headers:
        return None
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str) or not name.strip():
            raise InputValidationError(f"webhook headers must map names to string values, got {name!r}")
        if any(c in name + value for c in "\r\n") or not name.isascii() or ":" in name:
            raise InputValidationError(f"webhook header {name!r} has a character a header cannot carry")
        checked[name] = value
    return checked
