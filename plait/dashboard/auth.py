"""Who is looking at the dashboard: the API's tokens carried in a session cookie, and CSRF for every action.

The session cookie holds a random nonce and, once someone logs in, the API
token they pasted (``<nonce>.<token>``); it is HttpOnly and SameSite=Strict,
so page scripts and other sites never see or send it. Each action carries a
CSRF value derived from the nonce, so a new login gets a new one. The token is
checked on every request by the API's own ``caller`` (a revoked token stops
working at once). Without any token the dashboard answers loopback clients only.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from plait.engine import Engine
from plait.http.auth import SCOPE_ORDER, Caller, Namespaces, caller
from plait.http.errors import ApiError

COOKIE = "plait_session"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


class NotSignedIn(Exception):
    """The request has no valid token: show the login page."""


class Refused(Exception):
    """The request may not do this (scope, CSRF, or a non-local client without tokens)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Viewer:
    """The person on the page: their namespace's engine, what they may do, and the CSRF value for forms."""

    caller: Caller
    engine: Engine
    csrf: str
    signed_in: bool

    @property
    def can_act(self) -> bool:
        return SCOPE_ORDER[self.caller.scope] >= SCOPE_ORDER["write"]

    @property
    def is_admin(self) -> bool:
        return self.caller.scope == "admin"


def split_session(value: str | None) -> tuple[str | None, str | None]:
    """The nonce and token held by a session cookie (either may be missing)."""
    if not value:
        return None, None
    nonce, _, token = value.partition(".")
    if len(nonce) != 32 or not all(c in "0123456789abcdef" for c in nonce):
        return None, None
    return nonce, token or None


def new_nonce() -> str:
    return secrets.token_hex(16)


def csrf_for(nonce: str) -> str:
    return hmac.new(nonce.encode(), b"plait-dashboard-csrf", hashlib.sha256).hexdigest()[:32]


def set_session(response: Response, request: Request, nonce: str, token: str | None) -> None:
    value = nonce if token is None else f"{nonce}.{token}"
    response.set_cookie(
        COOKIE,
        value,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        client_ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        client_ok = host in ("localhost", "testclient")
    # The Host header too: a page on another site that rebinds its DNS name to 127.0.0.1 must not read runs.
    return client_ok and host_name(request.headers.get("host", "")) in LOOPBACK_HOSTS


def host_name(header: str) -> str:
    """The name in a Host header, without its port."""
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0]


async def token_caller(request: Request, token: str) -> Caller:
    """The API's own check of ``token``, as if it came in an Authorization header."""
    headers = [(k, v) for k, v in request.scope["headers"] if k != b"authorization"]
    headers.append((b"authorization", b"Bearer " + token.encode()))
    return await caller(Request({**request.scope, "headers": headers}, request.receive))


async def viewer(request: Request) -> Viewer:
    """Who is asking; raises NotSignedIn or Refused."""
    spaces: Namespaces = request.app.state.namespaces
    nonce, token = split_session(request.cookies.get(COOKIE))
    request.state.new_nonce = None
    if nonce is None:
        nonce = new_nonce()
        request.state.new_nonce = nonce
    if not await spaces.auth_required():
        if not is_loopback(request):
            raise Refused(403, "without API tokens the dashboard answers on 127.0.0.1 only; create a token")
        who = Caller(spaces.engine.namespace, "admin")
        return Viewer(who, spaces.engine, csrf_for(nonce), signed_in=False)
    try:
        if token is not None:
            who = await token_caller(request, token)
        elif request.headers.get("authorization"):
            who = await caller(request)
        else:
            raise NotSignedIn()
    except ApiError as exc:
        raise NotSignedIn() from exc
    return Viewer(who, spaces.get(who.namespace), csrf_for(nonce), signed_in=True)


def check_action(request: Request, who: Viewer, form_csrf: str | None, scope: str = "write") -> None:
    """Refuses an action without the session's CSRF value or by a token of a lower scope."""
    if not form_csrf or not hmac.compare_digest(form_csrf, who.csrf):
        raise Refused(403, "this form has expired or did not come from the dashboard; reload the page and try again")
    if SCOPE_ORDER[who.caller.scope] < SCOPE_ORDER[scope]:
        raise Refused(403, f"this needs a token with scope {scope!r} (yours: {who.caller.scope!r})")
