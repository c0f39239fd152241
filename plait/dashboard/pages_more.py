"""Workflows (graph, figures, start a run), schedules, and webhooks with their dead letters."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from plait.dashboard import views
from plait.dashboard.app import first, form_of, render
from plait.dashboard.auth import Refused, Viewer, check_action
from plait.dashboard.forms import read_form, schema_form
from plait.dashboard.graph_layout import layout
from plait.errors import InputValidationError

STATS_SAMPLE = 200


async def workflows_page(request: Request, who: Viewer) -> Response:
    """Registered workflows (written in code or compiled from documents), stored documents and specs."""
    engine = who.engine
    workflows = sorted(engine.workflows(), key=lambda w: w.id)
    from_documents: set[str] = set(getattr(engine, "_document_ids", set()))
    # Specs (a workflow's contract without its code) exist on engines that have them.
    specs = sorted(getattr(engine, "_specs", {}).values(), key=lambda s: (s.id, s.version))
    return render(
        request,
        who,
        "workflows.html",
        workflows=workflows,
        from_documents=from_documents,
        documents=sorted(await engine.adocuments(), key=lambda d: d.id),
        specs=specs,
    )


async def workflow_page(request: Request, who: Viewer) -> Response:
    workflow = who.engine.get_workflow(request.path_params["workflow_id"])
    recent = (await who.engine.alist_runs(workflow=workflow.id, limit=STATS_SAMPLE)).items
    versions = [workflow.version, *sorted({r.workflow_version for r in recent} - {workflow.version})]
    plan = workflow.to_dict()
    return render(
        request,
        who,
        "workflow.html",
        workflow=workflow,
        plan=plan,
        graph=layout(plan),
        stats=views.workflow_stats(recent),
        recent=recent[:10],
        versions=versions,
        form=schema_form(workflow.input_codec.schema()),
        mermaid=workflow.to_mermaid(),
        duration=views.duration,
        cost_text=views.cost_text,
        from_document=workflow.id in getattr(who.engine, "_document_ids", set()),
    )


async def start_run(request: Request, who: Viewer) -> Response:
    workflow = who.engine.get_workflow(request.path_params["workflow_id"])
    form = await form_of(request)
    check_action(request, who, first(form, "csrf"))
    value = read_form(schema_form(workflow.input_codec.schema()), {k: v[0] for k, v in form.items()})
    key = first(form, "idempotency_key").strip() or None
    handle = await who.engine.astart(workflow.id, value, idempotency_key=key)
    return RedirectResponse(f"/runs/{handle.id}?note=started", status_code=303)


async def schedules_page(request: Request, who: Viewer) -> Response:
    schedules = await asyncio.to_thread(who.engine.schedules)
    return render(request, who, "schedules.html", schedules=schedules)


async def schedule_action(request: Request, who: Viewer) -> Response:
    form = await form_of(request)
    check_action(request, who, first(form, "csrf"))
    schedule_id, action = request.path_params["schedule_id"], request.path_params["action"]
    engine = who.engine
    if action == "pause":
        await asyncio.to_thread(engine.pause_schedule, schedule_id)
        return RedirectResponse("/schedules?note=paused", status_code=303)
    if action == "resume":
        await asyncio.to_thread(engine.resume_schedule, schedule_id)
        return RedirectResponse("/schedules?note=unpaused", status_code=303)
    if action == "trigger":
        run_id = await asyncio.to_thread(engine.trigger_schedule, schedule_id)
        return RedirectResponse(f"/runs/{run_id}?note=triggered", status_code=303)
    raise Refused(404, f"there is no schedule action {action!r}")


async def webhooks_page(request: Request, who: Viewer) -> Response:
    if not who.is_admin:
        raise Refused(403, "webhooks and dead letters need a token with scope 'admin'")
    hooks = await asyncio.to_thread(who.engine.webhooks)
    letters = await asyncio.to_thread(who.engine.dead_letters)
    return render(request, who, "webhooks.html", hooks=hooks, letters=letters)


async def replay(request: Request, who: Viewer) -> Response:
    form = await form_of(request)
    check_action(request, who, first(form, "csrf"), scope="admin")
    try:
        ids = None if first(form, "all") else [int(i) for i in form.get("letter_id", [])]
    except ValueError as exc:
        raise InputValidationError("dead letter ids are numbers") from exc
    await asyncio.to_thread(who.engine.replay_dead_letters, ids)
    return RedirectResponse("/webhooks?note=replayed", status_code=303)


ROUTES = [
    ("/workflows", workflows_page, ["GET"]),
    ("/workflows/{workflow_id}", workflow_page, ["GET"]),
    ("/workflows/{workflow_id}/runs", start_run, ["POST"]),
    ("/schedules", schedules_page, ["GET"]),
    ("/schedules/{schedule_id}/{action}", schedule_action, ["POST"]),
    ("/webhooks", webhooks_page, ["GET"]),
    ("/webhooks/replay", replay, ["POST"]),
]
