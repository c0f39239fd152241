"""API tokens: only a hash is stored; the secret is shown once, at creation.

Revoking keeps the row (with ``revoked_at``): once a database has had a token,
its API requires one for good, even after the last is revoked.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from plait.store.base import Store

SCOPES = ("read", "write", "admin")


@dataclass(frozen=True)
class TokenRow:
    id: str
    namespace: str
    scope: str
    created_at: float
    revoked_at: float | None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create(store: Store, namespace: str, scope: str, now: float) -> tuple[TokenRow, str]:
    """A new token and its full value ``plt_<id>_<secret>`` (the only time the secret exists in clear)."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    await store.sql(
        "INSERT INTO plait_tokens (id, namespace, scope, hash, created_at) VALUES (?, ?, ?, ?, ?)",
        (token_id, namespace, scope, _hash(secret), now),
        write=True,
    )
    return TokenRow(token_id, namespace, scope, now, None), f"plt_{token_id}_{secret}"


async def verify(store: Store, value: str) -> TokenRow | None:
    """The token ``value`` names, if it exists, matches and is not revoked."""
    try:
        prefix, token_id, secret = value.split("_", 2)
    except ValueError:
        return None
    # Checked before the query: ids are 12 hex digits, and a NUL byte is no text to PostgreSQL.
    if prefix != "plt" or len(token_id) != 12 or not all(c in "0123456789abcdef" for c in token_id):
        return None
    rows = await store.sql(
        "SELECT id, namespace, scope, hash, created_at, revoked_at FROM plait_tokens WHERE id = ?", (token_id,)
    )
    if not rows or rows[0][5] is not None or not hmac.compare_digest(rows[0][3], _hash(secret)):
        return None
    return TokenRow(rows[0][0], rows[0][1], rows[0][2], rows[0][4], rows[0][5])


async def revoke(store: Store, token_id: str, now: float) -> bool:
    rows = await store.sql(
        "UPDATE plait_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING id",
        (now, token_id),
        write=True,
    )
    return bool(rows)


async def any_active(store: Store) -> bool:
    """Whether a token that is not revoked exists."""
    rows = await store.sql("SELECT 1 FROM plait_tokens WHERE revoked_at IS NULL LIMIT 1")
    return bool(rows)


async def auth_required(store: Store) -> bool:
    """Whether the API requires tokens: a token was ever created here, revoked or not."""
    rows = await store.sql("SELECT 1 FROM plait_tokens LIMIT 1")
    return bool(rows)
