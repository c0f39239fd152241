"""Signed webhooks: events delivered after they commit, retried with back-off, dead-lettered, replayable.

Each request carries ``Plait-Signature: t=<unix seconds>,v1=<hex>`` where the
hex is HMAC-SHA256 of ``"<t>.<body>"`` with the webhook's secret; receivers
check it with ``plait.webhooks.verify`` and refuse old timestamps (replays).
Delivery is at least once: dedupe on the ``Plait-Event-Id`` header.

A receiver cannot hurt the engine: each delivery has a total deadline (not
just one per read), only the first few KB of an answer are read, and a
delivery that runs out of time is retried and dead-lettered like any failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel

from plait.clock import Clock, wall_seconds
from plait.runs import Event
from plait.store import webhooks as table
from plait.store.base import Store

log = logging.getLogger("plait.webhooks")

SIGNATURE_HEADER = "Plait-Signature"
DEFAULT_TOLERANCE_SECONDS = 300
# The most of a receiver's answer that is read; only its status matters.
MAX_RESPONSE_BYTES = 4096


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(
    secret: str, header: str, body: bytes, *, tolerance: float = DEFAULT_TOLERANCE_SECONDS, now: float | None = None
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` and is at most ``tolerance`` seconds old."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
        given = fields["v1"]
        if abs((time.time() if now is None else now) - timestamp) > tolerance:
            return False
    except (KeyError, ValueError, TypeError, OverflowError):
        return False
    if not given.isascii():  # compare_digest refuses non-ASCII text; such a signature is simply wrong
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


class Webhook(BaseModel):
    """A webhook subscription as shown to users: never its secret, nor its headers' values."""

    id: str
    url: str
    event_types: list[str] | None
    workflows: list[str] | None
    created_at: datetime
    header_names: list[str] = []
    timeout: float | None = None
    paused: bool = False

    @classmethod
    def from_row(cls, row: table.WebhookRow) -> Webhook:
        # Only the names of the extra headers: their values may be credentials.
        return cls(
            id=row.id,
            url=row.url,
            event_types=row.event_types,
            workflows=row.workflows,
            created_at=datetime.fromtimestamp(row.created_at, UTC),
            header_names=sorted(row.headers or {}),
            timeout=row.timeout,
            paused=row.paused,
        )


class DeadLetter(BaseModel):
    """An event a webhook could not deliver after every retry; ``engine.replay_dead_letters`` sends it again."""

    id: int
    webhook_id: str
    event_id: int
    attempts: int
    last_error: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: table.DeadLetterRow) -> DeadLetter:
        return cls(
            id=row.id,
            webhook_id=row.webhook_id,
            event_id=row.event_id,
            attempts=row.attempts,
            last_error=row.last_error,
            created_at=datetime.fromtimestamp(row.created_at, UTC),
        )


def wants(hook: table.WebhookRow, event: Event) -> bool:
    if hook.event_types is not None and event.type not in hook.event_types:
        return False
    return hook.workflows is None or event.workflow_id in hook.workflows


class WebhookDispatcher:
    """Delivers the event feed to the namespace's webhooks, one leased webhook at a time per process."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        namespace: str,
        owner: str,
        *,
        max_attempts: int = 5,
        first_backoff: float = 1.0,
        timeout: float = 10.0,
        poll: float = 0.25,
        lease_seconds: float = 30.0,
    ) -> None:
        self._store = store
        self._clock = clock
        self._namespace = namespace
        self._owner = owner
        self.max_attempts = max_attempts
        self.first_backoff = first_backoff
        self._timeout = timeout
        self._poll = poll
        self._lease_seconds = lease_seconds
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._draining: dict[str, asyncio.Task[None]] = {}

    def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self._timeout)
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._draining.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
        try:
            await table.release_webhooks(self._store, self._owner)
        except Exception as exc:  # noqa: BLE001 - the lease expires on its own
            log.warning("plait: could not hand back webhooks: %s", exc)

    async def _run(self) -> None:
        while True:
            try:
                wall = wall_seconds()
                hooks = await table.claim_webhooks(
                    self._store, self._namespace, self._owner, wall, wall + self._lease_seconds
                )
            except Exception as exc:  # noqa: BLE001 - an outage pauses deliveries; they resume from the cursor
                log.warning("plait: webhook dispatcher cannot reach the store: %s", exc)
                hooks = []
            for hook in hooks:
                running = self._draining.get(hook.id)
                if running is None or running.done():
                    self._draining[hook.id] = asyncio.ensure_future(self._drain(hook))
            await asyncio.sleep(self._poll)

    async def _drain(self, hook: table.WebhookRow) -> None:
        try:
            await self._drain_events(hook)
        except Exception as exc:  # noqa: BLE001 - the next poll starts again from the stored cursor
            log.warning("plait webhook %s: delivery paused: %s", hook.id, exc)

    async def _drain_events(self, hook: table.WebhookRow) -> None:
        """Deliver every event after the hook's cursor, then move the cursor (at-least-once)."""
        cursor = hook.cursor
        while True:
            rows, next_cursor = await self._store.read_events(self._namespace, cursor, 50)
            if not rows:
                return
            for row in rows:
                event = Event.from_row(row)
                if wants(hook, event) and not await self._deliver_with_retries(hook, event):
                    return  # paused: the cursor stays before this event, which waits for resume
            cursor = next_cursor
            if not await table.advance_cursor(self._store, hook.id, self._owner, cursor):
                return  # another process took the webhook over

    async def _deliver_with_retries(self, hook: table.WebhookRow, event: Event) -> bool:
        """Deliver or dead-letter the event; False when the webhook was paused meanwhile (nothing done)."""
        error = ""
        for attempt in range(1, self.max_attempts + 1):
            if await table.is_paused(self._store, hook.id):
                return False
            error = await self.deliver(hook, event)
            if not error:
                return True
            log.warning("plait webhook %s: event %s attempt %d failed: %s", hook.id, event.id, attempt, error)
            if attempt < self.max_attempts:
                await self._clock.sleep(self.first_backoff * 2 ** (attempt - 1))
        if await table.is_paused(self._store, hook.id):  # paused while failing: the event waits, not dead-lettered
            return False
        await table.add_dead_letter(
            self._store, hook.id, event.id, self.max_attempts, error, self._clock.now().timestamp()
        )
        return True

    async def deliver(self, hook: table.WebhookRow, event: Event) -> str:
        """POST one event; "" on a 2xx answer, else what went wrong (the secret never appears in it).

        The whole delivery, answer included, must finish within the webhook timeout.
        """
        try:
            body = event.model_dump_json().encode()
        except Exception as exc:  # noqa: BLE001 - an event that cannot be sent is dead-lettered, not fatal
            return f"event {event.id} cannot be written as JSON: {type(exc).__name__}"
        headers: dict[str, Any] = {
            **(hook.headers or {}),
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(hook.secret, body, int(time.time())),
            "Plait-Event-Id": str(event.id),
            "Plait-Event-Type": event.type,
            "Plait-Webhook-Id": hook.id,
        }
        timeout = hook.timeout or self._timeout
        client = self._client or httpx.AsyncClient(timeout=timeout)
        try:
            async with asyncio.timeout(timeout):
                async with client.stream("POST", hook.url, content=body, headers=headers) as response:
                    await _read_at_most(response, MAX_RESPONSE_BYTES)
                    status = response.status_code
        except TimeoutError:
            return f"Timeout: no complete answer within {timeout:g}s"
        except Exception as exc:  # noqa: BLE001 - any failure of the request is a failed delivery, retried
            return f"{type(exc).__name__}: {exc}"
        finally:
            if client is not self._client:
                await client.aclose()
        if 200 <= status < 300:
            return ""
        return f"HTTP {status}"


async def _read_at_most(response: httpx.Response, limit: int) -> None:
    """Read up to ``limit`` bytes of the answer; leaving the stream early closes the connection."""
    read = 0
    async for chunk in response.aiter_raw():
        read += len(chunk)
        if read >= limit:
            return
