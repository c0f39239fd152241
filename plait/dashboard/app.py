"""Mounting the dashboard on the API's app: templates, static files, the login pages and error pages."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import FastAPI
from jinja2 import Environment, PackageLoader
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from plait.dashboard import panels
from plait.dashboard.auth import (
    COOKIE,
    NotSignedIn,
    Refused,
    Viewer,
    csrf_for,
    new_nonce,
    set_session,
    split_session,
    token_caller,
    viewer,
)
from plait.dashboard.live import Hub
from plait.errors import PlaitError
from plait.http.errors import STATUS_BY_CODE, ApiError

Page = Callable[[Request, Viewer], Awaitable[Response]]

SECURITY_HEADERS = {
    # No inline script or style anywhere: a value that escaped escaping still could not run.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

NOTES = {
    "cancelled": "Cancelled.",
    "retried": "Retrying from the failed step.",
    "approved": "Approved.",
    "rejected": "Rejected.",
    "sent": "Event sent.",
    "not_delivered": "No step of this run waits for that event now; it is kept for when one does.",
    "resumed": "Resumed.",
    "started": "Run started.",
    "paused": "Schedule paused.",
    "unpaused": "Schedule resumed.",
    "triggered": "Schedule triggered: a run started.",
    "replayed": "Dead letters replayed.",
    "bulk": "Done.",
}


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("plait.dashboard", "templates"), autoescape=True)
    env.filters["when"] = lambda value: "—" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")
    env.filters["iso"] = lambda value: "" if value is None else value.isoformat()
    env.filters["q"] = lambda value: quote(str(value), safe="")
    return env


TEMPLATES = _environment()


def render(request: Request, who: Viewer | None, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    note = NOTES.get(request.query_params.get("note", ""))
    body = TEMPLATES.get_template(template).render(
        request=request,
        who=who,
        note=note,
        now=datetime.now(UTC),
        panels=panels,
        **context,
    )
    response = HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)
    nonce = getattr(request.state, "new_nonce", None)
    if nonce is not None:
        set_session(response, request, nonce, None)
    return response


def error_page(request: Request, who: Viewer | None, status: int, code: str, message: str) -> HTMLResponse:
    return render(request, who, "error.html", status=status, code=code, message=message, status_code=status)


async def form_of(request: Request) -> dict[str, list[str]]:
    """A urlencoded form body (the dashboard's forms never upload files)."""
    return parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)


def first(form: dict[str, list[str]], name: str, default: str = "") -> str:
    values = form.get(name)
    return values[0] if values else default


def guarded(page: Page) -> Callable[[Request], Awaitable[Response]]:
    """Runs ``page`` for a signed-in viewer; errors become HTML pages, never JSON or a 500."""

    @functools.wraps(page)
    async def endpoint(request: Request) -> Response:
        who: Viewer | None = None
        try:
            who = await viewer(request)
            return await page(request, who)
        except NotSignedIn:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            if request.method != "GET":
                target = "/"
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        except Refused as exc:
            return error_page(request, who, exc.status, "auth.refused", exc.message)
        except ApiError as exc:
            return error_page(request, who, exc.status, exc.code, exc.message)
        except PlaitError as exc:
            return error_page(request, who, STATUS_BY_CODE.get(exc.code, 400), exc.code, exc.message)

    return endpoint


def _safe_next(value: str) -> str:
    # Only paths on this site: "//evil.example" or "https://..." would send the user elsewhere after login.
    return value if value.startswith("/") and not value.startswith("//") and "\\" not in value else "/"


async def login_page(request: Request) -> Response:
    nonce, _ = split_session(request.cookies.get(COOKIE))
    request.state.new_nonce = None
    if nonce is None:
        nonce = new_nonce()
        request.state.new_nonce = nonce
    return render(
        request, None, "login.html", csrf=csrf_for(nonce), next=_safe_next(request.query_params.get("next", "/"))
    )


async def login(request: Request) -> Response:
    form = await form_of(request)
    nonce, _ = split_session(request.cookies.get(COOKIE))
    request.state.new_nonce = None
    if nonce is None or first(form, "csrf") != csrf_for(nonce):
        return error_page(request, None, 403, "auth.csrf", "the login form expired; open the login page again")
    token = first(form, "token").strip()
    try:
        await token_caller(request, token)
    except ApiError as exc:
        fresh = new_nonce()
        request.state.new_nonce = fresh
        return render(
            request,
            None,
            "login.html",
            status=401,
            csrf=csrf_for(fresh),
            next=first(form, "next", "/"),
            error=exc.message,
        )
    response = RedirectResponse(_safe_next(first(form, "next", "/")), status_code=303)
    set_session(response, request, new_nonce(), token)  # a new nonce: a new session, a new CSRF value
    return response


async def logout(request: Request) -> Response:
    form = await form_of(request)
    nonce, _ = split_session(request.cookies.get(COOKIE))
    if nonce is None or first(form, "csrf") != csrf_for(nonce):
        return error_page(request, None, 403, "auth.csrf", "the form expired; reload the page and try again")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard at ``/`` on the API's app (same engine functions, same tokens)."""
    from plait.dashboard import pages_documents, pages_more, pages_runs, pages_usage

    app.state.dashboard_hub = Hub()
    app.mount("/static", StaticFiles(packages=[("plait.dashboard", "static")]), name="dashboard-static")
    app.add_route("/login", login_page, methods=["GET"], include_in_schema=False)
    app.add_route("/login", login, methods=["POST"], include_in_schema=False)
    app.add_route("/logout", logout, methods=["POST"], include_in_schema=False)
    for path, page, methods in [*pages_runs.ROUTES, *pages_more.ROUTES, *pages_documents.ROUTES, *pages_usage.ROUTES]:
        app.add_route(path, guarded(page), methods=methods, include_in_schema=False)
