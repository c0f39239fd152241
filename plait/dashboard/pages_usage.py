"""Model usage and cost by workflow, model and day, over a chosen stretch of time."""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response

from plait.dashboard import views
from plait.dashboard.app import render
from plait.dashboard.auth import Viewer
from plait.errors import InputValidationError

SINCE = {"1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30), "all": None}
GROUPS = (("workflow", "By workflow"), ("model", "By model"), ("day", "By day (UTC)"))


async def usage_page(request: Request, who: Viewer) -> Response:
    since = request.query_params.get("since") or "30d"
    if since not in SINCE:
        raise InputValidationError(f"since must be one of {', '.join(SINCE)}, got {since!r}")
    workflow = request.query_params.get("workflow") or None
    tables = [
        (title, group, await who.engine.ausage(workflow=workflow, since=SINCE[since], group_by=group))  # type: ignore[arg-type]
        for group, title in GROUPS
    ]
    return render(
        request,
        who,
        "usage.html",
        tables=tables,
        since=since,
        choices=list(SINCE),
        workflow=workflow,
        workflows=sorted(w.id for w in who.engine.workflows()),
        cost_text=views.cost_text,
    )


ROUTES = [("/usage", usage_page, ["GET"])]
