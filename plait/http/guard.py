"""What reaches the API at all: the Host it is addressed to, where it comes from, its body's type, size and pace.

Each check is a small ASGI middleware answering the structured error itself,
before any route runs:

- ``Host`` must name a loopback address, the address the request arrived on,
  or one of ``allowed_hosts`` (a page on another name reached through DNS
  rebinding is refused);
- a state-changing request from a browser page of another origin
  (``Origin``, ``Sec-Fetch-Site``) is refused, and the API's POSTs with a
  body must be JSON (a cross-site form cannot send that without a preflight):
  the route answers 415 without acting, after the 400 of a malformed body and
  the 404 of an unknown workflow;
- a body over the size limit gets 413, one that takes longer than the body
  deadline gets 408.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plait.http.errors import error_body

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}
# Set in the ASGI scope of an API POST whose body is not declared JSON; SafeJsonRoute answers it 415.
NOT_JSON = "plait.not_json"
NOT_JSON_MESSAGE = (
    "the body must be sent as JSON: add -H 'Content-Type: application/json' "
    "(curl -d sends application/x-www-form-urlencoded)"
)


async def refuse(send: Send, status: int, code: str, message: str, *, close: bool = False) -> None:
    """Answer the structured error; ``close`` when part of the body is still unread (the connection is unusable)."""
    headers = {"connection": "close"} if close else None
    response = JSONResponse(error_body(code, message), status_code=status, headers=headers)
    await response({"type": "http"}, _empty_receive, send)


def host_name(authority: str) -> str:
    """The host part of a ``Host`` header or URL authority, lower case, without port or IPv6 brackets."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1:].partition("]")[0]
    name, colon, port = authority.rpartition(":")
    return name if colon and port.isdigit() else authority


def matches(name: str, pattern: str) -> bool:
    """``pattern`` is a name, ``*.example.com`` (any subdomain) or ``*`` (anything)."""
    if pattern == "*" or name == pattern:
        return True
    return pattern.startswith("*.") and name.endswith(pattern[1:])


class RequestGuard:
    """Refuses foreign ``Host`` names, NUL bytes in URLs and headers, cross-origin writes and non-JSON API POSTs."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str] = ()) -> None:
        self.app = app
        self.allowed = tuple(host_name(h) if h != "*" and not h.startswith("*.") else h.lower() for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self.refusal(scope)
            if refusal is not None:
                await refuse(send, *refusal)
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if b"\x00" in value:
                return 400, "request.invalid", f"the {name.decode('latin-1')} header holds a NUL byte"
            headers[name] = value
        host = headers.get(b"host", b"").decode("latin-1")
        if host and not self.is_allowed_host(host_name(host), scope):
            return (
                400,
                "request.host",
                f"this server does not answer for Host {host!r}: start it with --allowed-host "
                f"{host_name(host)} (create_app(engine, allowed_hosts=[...])) if that name is yours",
            )
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            return 400, "request.invalid", "the URL holds a NUL byte, which no id or name may contain"
        method = scope["method"]
        if method in SAFE_METHODS:
            return None
        if not is_same_origin(headers, scope):
            return (
                403,
                "request.cross_origin",
                "a web page of another origin may not change anything here; call the API from your own code",
            )
        if method == "POST" and _route_path(scope).startswith("/api/") and not is_json_or_empty(headers):
            # Refused by the route (SafeJsonRoute), after the checks a user fixes first: a malformed body
            # is a 400 and an unknown workflow a 404 whatever the content type; then this 415.
            scope[NOT_JSON] = True
        return None

    def is_allowed_host(self, name: str, scope: Scope) -> bool:
        if name in LOOPBACK_NAMES:
            return True
        server = scope.get("server")
        if server and name == host_name(str(server[0])):
            return True
        return any(matches(name, pattern) for pattern in self.allowed)


def is_same_origin(headers: dict[bytes, bytes], scope: Scope) -> bool:
    """False for what a browser marks as coming from another origin; clients that are not browsers send neither."""
    if headers.get(b"sec-fetch-site", b"").lower() in (b"cross-site", b"same-site"):
        return False
    origin = headers.get(b"origin")
    if origin is None:
        return True
    scheme, sep, authority = origin.decode("latin-1").strip().lower().partition("://")
    if not sep:  # "null" (a sandboxed page, a file) or garbage
        return False
    host = headers.get(b"host", b"").decode("latin-1").strip().lower()
    return _with_port(authority, scheme) == _with_port(host, str(scope.get("scheme", "http")))


def is_json_or_empty(headers: dict[bytes, bytes]) -> bool:
    content_type = headers.get(b"content-type")
    if content_type is None:
        return headers.get(b"content-length", b"0").strip() == b"0" and b"transfer-encoding" not in headers
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class BodyLimit:
    """Refuses bodies over ``limit`` bytes with 413, whether or not they declare their length."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(send, close=True)
            return
        seen = 0
        answered = started = False

        async def counted() -> Message:
            nonlocal seen, answered
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit and not started:
                # Answered here, not by raising: the route's body parsing would turn an exception into a 400.
                answered = True
                await self._too_large(send, close=True)
                return {"type": "http.disconnect"}
            return message

        async def send_unless_answered(message: Message) -> None:
            nonlocal started
            if answered:
                return
            started = True
            await send(message)

        await self.app(scope, counted, send_unless_answered)

    async def _too_large(self, send: Send, *, close: bool = False) -> None:
        await refuse(send, 413, "request.too_large", f"the body is over the {self.limit}-byte limit", close=close)


class BodyDeadline:
    """Answers 408 when a request's body has not fully arrived ``seconds`` after its headers (slow clients)."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        body_done = answered = started = False

        async def bounded() -> Message:
            nonlocal body_done, answered
            if answered:
                return {"type": "http.disconnect"}
            if body_done:  # after the body, receive() waits for a disconnect: streams rely on that
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                if not started:
                    text = f"the body did not arrive within {self.seconds:g} s"
                    await refuse(send, 408, "request.timeout", text, close=True)
                answered = True
                return {"type": "http.disconnect"}
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def send_unless_answered(message: Message) -> None:
            nonlocal started
            if not answered:
                started = True
                await send(message)

        await self.app(scope, bounded, send_unless_answered)


def _with_port(authority: str, scheme: str) -> str:
    if authority.startswith("["):
        return authority if "]:" in authority else f"{authority}:{DEFAULT_PORTS.get(scheme, '')}"
    return authority if ":" in authority else f"{authority}:{DEFAULT_PORTS.get(scheme, '')}"


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


async def _empty_receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
