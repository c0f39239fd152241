"""Webhook subscriptions, their delivery cursors and dead letters, in portable SQL over any store."""

from __future__ import annotations

import json
from dataclasses import dataclass

from plait.store.base import EventRow, Store

EVENT_COLUMNS = "id, namespace, run_id, workflow_id, seq, type, step_id, step_key, attempt, payload, created_at"


@dataclass(frozen=True)
class WebhookRow:
    id: str
    namespace: str
    url: str
    secret: str
    event_types: list[str] | None
    workflows: list[str] | None
    cursor: str | None
    created_at: float
    headers: dict[str, str] | None = None
    timeout: float | None = None
    paused: bool = False


@dataclass(frozen=True)
class DeadLetterRow:
    id: int
    webhook_id: str
    event_id: int
    attempts: int
    last_error: str | None
    created_at: float
    replayed_at: float | None


_WEBHOOK_COLUMNS = "id, namespace, url, secret, event_types, workflows, cursor, created_at, headers, timeout, paused"


def _webhook(row: tuple[object, ...]) -> WebhookRow:
    id_, namespace, url, secret, types, workflows, cursor, created, headers, timeout, paused = row
    return WebhookRow(
        str(id_), str(namespace), str(url), str(secret),
        json.loads(str(types)) if types else None, json.loads(str(workflows)) if workflows else None,
        None if cursor is None else str(cursor), float(str(created)),
        json.loads(str(headers)) if headers else None, None if timeout is None else float(str(timeout)), bool(paused),
    )  # fmt: skip


async def add_webhook(store: Store, hook: WebhookRow) -> None:
    await store.sql(
        f"INSERT INTO plait_webhooks ({_WEBHOOK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            hook.id, hook.namespace, hook.url, hook.secret,
            json.dumps(hook.event_types) if hook.event_types else None,
            json.dumps(hook.workflows) if hook.workflows else None, hook.cursor, hook.created_at,
            json.dumps(hook.headers) if hook.headers else None, hook.timeout, 1 if hook.paused else 0,
        ),
        write=True,
    )  # fmt: skip


async def list_webhooks(store: Store, namespace: str) -> list[WebhookRow]:
    rows = await store.sql(
        f"SELECT {_WEBHOOK_COLUMNS} FROM plait_webhooks WHERE namespace = ? ORDER BY created_at, id", (namespace,)
    )
    return [_webhook(row) for row in rows]


async def remove_webhook(store: Store, namespace: str, webhook_id: str) -> bool:
    rows = await store.sql(
        "DELETE FROM plait_webhooks WHERE namespace = ? AND id = ? RETURNING id", (namespace, webhook_id), write=True
    )
    return bool(rows)


async def set_paused(store: Store, namespace: str, webhook_id: str, paused: bool) -> bool:
    """Pause or resume deliveries; events keep accumulating after the cursor while paused."""
    rows = await store.sql(
        "UPDATE plait_webhooks SET paused = ? WHERE namespace = ? AND id = ? RETURNING id",
        (1 if paused else 0, namespace, webhook_id),
        write=True,
    )
    return bool(rows)


async def is_paused(store: Store, webhook_id: str) -> bool:
    rows = await store.sql("SELECT paused FROM plait_webhooks WHERE id = ?", (webhook_id,))
    return bool(rows and rows[0][0])


async def claim_webhooks(
    store: Store, namespace: str, owner: str, wall_now: float, lease_until: float
) -> list[WebhookRow]:
    """Lease the namespace's unpaused webhooks nobody else delivers for, so each event goes out from one process."""
    # A read first: with no webhooks (the usual case) the dispatcher's poll must not cost a write.
    if not await store.sql("SELECT 1 FROM plait_webhooks WHERE namespace = ? AND paused = 0 LIMIT 1", (namespace,)):
        return []
    rows = await store.sql(
        "UPDATE plait_webhooks SET owner = ?, lease_expires_at = ? WHERE namespace = ? AND paused = 0 "
        "AND (owner IS NULL OR owner = ? OR lease_expires_at < ?) "
        f"RETURNING {_WEBHOOK_COLUMNS}",
        (owner, lease_until, namespace, owner, wall_now),
        write=True,
    )
    return [_webhook(row) for row in rows]


async def release_webhooks(store: Store, owner: str) -> None:
    await store.sql(
        "UPDATE plait_webhooks SET owner = NULL, lease_expires_at = NULL WHERE owner = ?", (owner,), write=True
    )


async def advance_cursor(store: Store, webhook_id: str, owner: str, cursor: str | None) -> bool:
    """Move the webhook past a handled event; False when this process no longer holds it."""
    rows = await store.sql(
        "UPDATE plait_webhooks SET cursor = ? WHERE id = ? AND owner = ? RETURNING id",
        (cursor, webhook_id, owner),
        write=True,
    )
    return bool(rows)


async def add_dead_letter(store: Store, webhook_id: str, event_id: int, attempts: int, error: str, now: float) -> None:
    await store.sql(
        "INSERT INTO plait_dead_letters (webhook_id, event_id, attempts, last_error, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (webhook_id, event_id, attempts, error, now),
        write=True,
    )


async def list_dead_letters(store: Store, namespace: str, webhook_id: str | None) -> list[DeadLetterRow]:
    rows = await store.sql(
        "SELECT d.id, d.webhook_id, d.event_id, d.attempts, d.last_error, d.created_at, d.replayed_at "
        "FROM plait_dead_letters d JOIN plait_webhooks w ON w.id = d.webhook_id "
        "WHERE w.namespace = ? AND d.replayed_at IS NULL AND (CAST(? AS TEXT) IS NULL OR d.webhook_id = ?) "
        "ORDER BY d.id",
        (namespace, webhook_id, webhook_id),
    )
    return [DeadLetterRow(*row) for row in rows]


async def mark_replayed(store: Store, dead_letter_id: int, now: float) -> None:
    await store.sql("UPDATE plait_dead_letters SET replayed_at = ? WHERE id = ?", (now, dead_letter_id), write=True)


async def read_event(store: Store, event_id: int) -> EventRow | None:
    rows = await store.sql(f"SELECT {EVENT_COLUMNS} FROM plait_events WHERE id = ?", (event_id,))
    return EventRow(*rows[0]) if rows else None
