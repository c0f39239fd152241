"""Who is calling: bearer tokens, their namespace and scope, and the loopback-only tokenless mode."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from plait.engine import Engine
from plait.http.errors import ApiError
from plait.store import tokens as token_table

SCOPE_ORDER = {"read": 0, "write": 1, "admin": 2}


@dataclass(frozen=True)
class Caller:
    """Who is calling: the namespace and scope of their token (admin of the app's namespace without tokens)."""

    namespace: str
    scope: str


@dataclass
class Namespaces:
    """One engine per namespace a token may use, sharing the app engine's database and workflows."""

    engine: Engine
    others: dict[str, Engine] = field(default_factory=dict)
    checked_at: float = -1e9
    required: bool = False

    def get(self, namespace: str) -> Engine:
        if namespace == self.engine.namespace:
            return self.engine
        if namespace not in self.others:
            other = Engine(self.engine.url, namespace=namespace, worker=False)
            other.register(*self.engine.workflows(), *self.engine.registry.connectors)
            self.others[namespace] = other
        return self.others[namespace]

    async def auth_required(self) -> bool:
        """Whether requests need a token: once true, true for the life of the app (and of the database)."""
        # Cached briefly: a first token created with the CLI takes effect within a second.
        if not self.required and time.monotonic() - self.checked_at > 1.0:
            self.required = await asyncio.to_thread(
                lambda: self.engine._loop.run(token_table.auth_required(self.engine._store))
            )
            self.checked_at = time.monotonic()
        return self.required


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address the server received a request on) is a loopback address.

    Anything that is not an IP address (a Unix socket path, an in-process
    test transport) is local too.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


async def caller(request: Request) -> Caller:
    """The caller's namespace and scope, from its bearer token (admin of the app's namespace without tokens)."""
    spaces: Namespaces = request.app.state.namespaces
    engine = spaces.engine
    if not await spaces.auth_required():
        server = request.scope.get("server")
        if server and not is_loopback(str(server[0])):
            raise ApiError(
                401,
                "auth.missing",
                "this API has no tokens, so it answers only on a loopback address: "
                "create one with `plait tokens create --namespace NS --scope admin`",
            )
        return Caller(engine.namespace, "admin")
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise ApiError(401, "auth.missing", "send Authorization: Bearer <token> (plait tokens create)")
    value = header.split(" ", 1)[1].strip()
    row = await asyncio.to_thread(lambda: engine._loop.run(token_table.verify(engine._store, value)))
    if row is None:
        raise ApiError(401, "auth.invalid", "the token is unknown or revoked")
    return Caller(row.namespace, row.scope)


def needs(scope: str) -> Callable[..., Awaitable[Caller]]:
    async def check(who: Annotated[Caller, Depends(caller)]) -> Caller:
        if SCOPE_ORDER[who.scope] < SCOPE_ORDER[scope]:
            raise ApiError(403, "auth.scope", f"this needs a token with scope {scope!r} (yours: {who.scope!r})")
        return who

    return check


Reader = Annotated[Caller, Depends(needs("read"))]
Writer = Annotated[Caller, Depends(needs("write"))]
Admin = Annotated[Caller, Depends(needs("admin"))]
