"""The runs pages: the list, one run, two runs side by side, and what can be done to them."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from plait.dashboard import views
from plait.dashboard.app import first, form_of, render
from plait.dashboard.auth import Refused, Viewer, check_action
from plait.dashboard.forms import read_form, schema_form
from plait.dashboard.graph_layout import layout
from plait.dashboard.live import Hub
from plait.engine import Engine, _encode_cursor
from plait.errors import InputValidationError, PlaitError, RunNotFound
from plait.runs import Event, Run, RunStatus, StepRecord
from plait.steps import Step

PAGE_SIZE = 50
EVENTS_READ = 5000  # read for the graph, the timeline and the waits; a run with more shows its first 5000
EVENTS_PAGE = 100  # shown per page of the event history, newest first
TEXT_SCAN = 1000  # runs read per text search request (input/output text has no index)
INLINE_STEPS = 20  # a run with more step keys renders each step's details when it is opened
BULK_LIMIT = 10_000


def _filters(request: Request) -> dict[str, str]:
    keep = ("workflow", "status", "q", "text", "after", "before")
    return {k: v for k in keep if (v := request.query_params.get(k, "").strip())}


def _moment(filters: dict[str, str], name: str) -> float | None:
    """A time filter from an ``<input type=datetime-local>`` (read as UTC) or an ISO time with a zone."""
    raw = filters.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise InputValidationError(f"{name} must be a time like 2026-05-01T09:30, got {raw!r}") from exc
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


async def runs_page(request: Request, who: Viewer) -> Response:
    engine = who.engine
    filters = _filters(request)
    status = filters.get("status")
    if status is not None and status not in RunStatus.__members__.values():
        raise InputValidationError(f"unknown status {status!r}")
    after, before = _moment(filters, "after"), _moment(filters, "before")
    cursor = request.query_params.get("cursor") or None
    if cursor is None and before is not None:
        # The listing's own keyset, newest first: every run created before ``before`` (no id sorts below "").
        cursor = _encode_cursor("-created", before, "")
    next_cursor: str | None = None
    scanned: int | None = None
    if "q" in filters:
        items = await _search(engine, filters["q"])
    elif "text" in filters:
        items, next_cursor, scanned = await _text_search(engine, filters, status, cursor, after)
    else:
        page = await engine.alist_runs(workflow=filters.get("workflow"), status=status, limit=PAGE_SIZE, cursor=cursor)
        items, next_cursor = page.items, page.next_cursor
        if after is not None and any(run.created_at.timestamp() < after for run in items):
            items, next_cursor = [run for run in items if run.created_at.timestamp() >= after], None
    return render(
        request,
        who,
        "runs.html",
        runs=items,
        filters=filters,
        cursor=request.query_params.get("cursor"),
        scanned=scanned,
        next_url="/?" + urlencode({**filters, "cursor": next_cursor}) if next_cursor else None,
        workflows=sorted(w.id for w in engine.workflows()),
        statuses=[s.value for s in RunStatus],
        duration=views.duration,
        cost_text=views.cost_text,
    )


async def _text_search(
    engine: Engine, filters: dict[str, str], status: str | None, cursor: str | None, after: float | None
) -> tuple[list[Run], str | None, int]:
    """Runs whose input or output holds the text (any case), among at most TEXT_SCAN runs per request.

    Bounded by scanning the newest runs matching the other filters (the store has
    no text index): the page says how many it read and links to the next stretch.
    """
    needle = filters["text"].casefold()
    found: list[Run] = []
    scanned = 0
    while scanned < TEXT_SCAN and len(found) < PAGE_SIZE:
        page = await engine.alist_runs(workflow=filters.get("workflow"), status=status, limit=100, cursor=cursor)
        for run in page.items:
            if after is not None and run.created_at.timestamp() < after:
                return found, None, scanned
            scanned += 1
            if needle in json.dumps([run.input, run.output], default=str, ensure_ascii=False).casefold():
                found.append(run)
        cursor = page.next_cursor  # whole pages only: the next request goes on from the engine's own cursor
        if cursor is None:
            return found, None, scanned
    return found, cursor, scanned


async def _search(engine: Engine, text: str) -> list[Run]:
    """Runs whose id or idempotency key is ``text``."""
    found: list[Run] = []
    with contextlib.suppress(RunNotFound):
        found.append(await (await engine.aget_run(text)).ainfo())
    keyed = await engine.alist_runs(idempotency_key=text, limit=10)
    found += [run for run in keyed.items if all(run.id != f.id for f in found)]
    return found


async def _load(engine: Engine, run_id: str) -> tuple[Run, list[StepRecord], list[Event]]:
    run, steps, events, _ = await _load_all(engine, run_id, artifacts=False)
    return run, steps, events


async def _load_all(
    engine: Engine, run_id: str, *, artifacts: bool = True
) -> tuple[Run, list[StepRecord], list[Event], list[Any]]:
    """The run, its step attempts, its first EVENTS_READ events and its artifacts (none on an engine without)."""
    handle = await engine.aget_run(run_id)
    run = await handle.ainfo()
    steps = await handle.asteps()
    events: list[Event] = []
    async for event in handle.aevents(follow=False):
        events.append(event)
        if len(events) >= EVENTS_READ:
            break
    listing = getattr(handle, "aartifacts", None) if artifacts else None
    return run, steps, events, [] if listing is None else list(await listing())


def _plan(engine: Engine, run: Run) -> dict[str, Any] | None:
    try:
        return engine.get_workflow(run.workflow_id, run.workflow_version).to_dict()
    except PlaitError:
        return None


def _approval(engine: Engine, run: Run) -> tuple[str, Any] | None:
    """The approval step the run waits on, with its form."""
    if not run.wait or run.wait.get("kind") != "approval":
        return None
    step_id = str(run.wait.get("step_id"))
    try:
        step = engine.get_workflow(run.workflow_id, run.workflow_version).find_step(step_id)
    except PlaitError:
        return None
    if not isinstance(step, Step) or step.approval_codec is None:
        return None
    return step_id, schema_form(step.approval_codec.schema())


async def run_page(request: Request, who: Viewer) -> Response:
    engine = who.engine
    run, steps, events, artifacts = await _load_all(engine, request.path_params["run_id"])
    plan = _plan(engine, run)
    now = datetime.now(UTC)
    graph = layout(plan, views.step_statuses(run, steps, plan, events)) if plan else None
    bars, timeline_height = views.timeline(run, steps, events, now)
    # Ordered by finish, not creation: SQLite then reads the parent index instead of walking every run
    # newest first to find this run's children (73 ms against 0.2 ms with 100,000 runs).
    children = (await engine.alist_runs(parent=run.id, order="-finished", limit=50)).items
    step_ids = [box.id for box in graph.boxes if box.kind != "terminal"] if graph else []
    step_list = views.step_views(steps, events)
    before = _int_param(request, "events_before")
    shown = [e for e in events if before is None or e.seq < before][-EVENTS_PAGE:][::-1]
    return render(
        request,
        who,
        "run.html",
        run=run,
        rid=quote(run.id, safe=""),  # in many links: quoted once
        steps=step_list,
        lazy=len(step_list) > INLINE_STEPS,
        events=shown,
        older_events=shown[-1].seq if shown and shown[-1].seq > (events[0].seq if events else 0) else None,
        events_capped=len(events) >= EVENTS_READ,
        graph=graph,
        bars=bars,
        timeline_height=timeline_height,
        children=children,
        approval=_approval(engine, run),
        step_ids=step_ids,
        artifacts=artifacts,
        config=getattr(run, "config", None) or {},
        preview=views.preview,
        duration=views.duration,
        usage_line=views.usage_line,
    )


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise InputValidationError(f"{name} must be a whole number") from exc


async def step_page(request: Request, who: Viewer) -> Response:
    """One step's attempts, logs, usage, config and artifacts (fetched when its panel opens on a long run)."""
    engine = who.engine
    key = request.path_params["key"]
    run, steps, events, artifacts = await _load_all(engine, request.path_params["run_id"])
    found = [s for s in views.step_views(steps, events) if s.key == key]
    if not found:
        raise RunNotFound(f"run {run.id} has no step {key!r} that ran; open the run to see its steps")
    return render(
        request,
        who,
        "step.html",
        run=run,
        rid=quote(run.id, safe=""),
        s=found[0],
        graph=_plan(engine, run) is not None,
        artifacts=artifacts,
        config=getattr(run, "config", None) or {},
        preview=views.preview,
        duration=views.duration,
        usage_line=views.usage_line,
    )


async def run_artifact(request: Request, who: Viewer) -> Response:
    """An artifact's bytes as a download (never shown inline: an HTML artifact must not run as a page here)."""
    engine = who.engine
    run_id, key = request.path_params["run_id"], request.path_params["key"]
    await engine.aget_run(run_id)  # another namespace's run is not found
    read = getattr(engine, "_artifact_bytes", None)
    if read is None:
        raise Refused(404, "this plait has no artifacts")
    row, raw = await engine._loop.run_async(read(run_id, key))
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in key.rsplit("/", 1)[-1]) or "artifact"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "X-Content-Type-Options": "nosniff"}
    return Response(raw, media_type=row.content_type, headers=headers)


async def run_value(request: Request, who: Viewer) -> Response:
    """A whole value (input, output or error of the run or of one step attempt) as a JSON download."""
    handle = await who.engine.aget_run(request.path_params["run_id"])
    what = request.query_params.get("field", "output")
    if what not in ("input", "output", "error"):
        raise InputValidationError("field must be input, output or error")
    key = request.query_params.get("step")
    if key is None:
        value = getattr(await handle.ainfo(), what)
        name = f"{handle.id}-{what}.json"
    else:
        attempt = int(request.query_params.get("attempt", "1"))
        matches = [s for s in await handle.asteps() if s.key == key and s.attempt == attempt]
        if not matches:
            raise RunNotFound(f"run {handle.id} has no attempt {attempt} of step {key!r}")
        value = getattr(matches[-1], what)
        name = f"{handle.id}-{key}-{attempt}-{what}.json"
    body = json.dumps(value, indent=2, default=str, ensure_ascii=False)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return Response(
        body,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{safe}"', "X-Content-Type-Options": "nosniff"},
    )


async def run_action(request: Request, who: Viewer) -> Response:
    """Cancel, retry, rerun from a step, approve, reject, send an event or resume, from the run's page."""
    engine = who.engine
    run_id = request.path_params["run_id"]
    action = request.path_params["action"]
    form = await form_of(request)
    check_action(request, who, first(form, "csrf"))
    target, note = f"/runs/{run_id}", action
    if action == "cancel":
        await engine.acancel(run_id, reason=first(form, "reason").strip() or None)
        note = "cancelled"
    elif action == "retry":
        await engine.aretry(run_id)
        note = "retried"
    elif action == "rerun":
        handle = await engine.arerun_from(run_id, first(form, "step_id"))
        target, note = f"/runs/{handle.id}", "started"
    elif action in ("approve", "reject"):
        run = await (await engine.aget_run(run_id)).ainfo()
        approval = _approval(engine, run)
        if approval is None or approval[0] != first(form, "step_id"):
            raise InputValidationError(f"run {run_id} does not wait for approval '{first(form, 'step_id')}' now")
        step_id, schema = approval
        values = {k: v[0] for k, v in form.items()}
        if action == "approve":
            await engine.aapprove(run_id, step_id, read_form(schema, values))
            note = "approved"
        else:
            await engine.areject(run_id, step_id, first(form, "reason"))
            note = "rejected"
    elif action == "event":
        payload = read_form(schema_form({}), {"json": first(form, "payload")})
        delivered = await engine.asend_event(run_id, first(form, "name"), payload)
        note = "sent" if delivered else "not_delivered"
    elif action == "resume":
        payload = read_form(schema_form({}), {"json": first(form, "payload")})
        await engine.aresume(run_id, first(form, "step_id"), payload)
        note = "resumed"
    else:
        raise Refused(404, f"there is no action {action!r}")
    return RedirectResponse(f"{target}?note={note}", status_code=303)


async def bulk_action(request: Request, who: Viewer) -> Response:
    """Retry or cancel the selected runs, or every run matching the list's filter."""
    engine = who.engine
    form = await form_of(request)
    action = first(form, "action")
    if action == "compare":
        return RedirectResponse("/compare?" + urlencode([("run_id", i) for i in form.get("run_id", [])]), 303)
    check_action(request, who, first(form, "csrf"))
    if action not in ("retry", "cancel"):
        raise InputValidationError("choose retry or cancel")
    if first(form, "scope") == "matching":
        ids = await _matching(engine, first(form, "workflow") or None, first(form, "status") or None)
    else:
        ids = form.get("run_id", [])
    done, skipped = 0, 0
    for run_id in ids:
        try:
            if action == "retry":
                await engine.aretry(run_id)
            else:
                await engine.acancel(run_id)
            done += 1
        except PlaitError:
            skipped += 1  # a run that is not failed (retry) or already ended (cancel) is left as it is
    back = {k: first(form, k) for k in ("workflow", "status") if first(form, k)}
    return RedirectResponse("/?" + urlencode({**back, "note": "bulk"}), status_code=303)


async def _matching(engine: Engine, workflow: str | None, status: str | None) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    while len(ids) < BULK_LIMIT:
        page = await engine.alist_runs(workflow=workflow, status=status, limit=500, cursor=cursor)
        ids += [run.id for run in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    return ids


async def compare_page(request: Request, who: Viewer) -> Response:
    ids = [i for i in request.query_params.getlist("run_id") if i][:2]
    if len(ids) != 2:
        return render(request, who, "compare.html", runs=None, chosen=ids)
    loaded = [await _load(who.engine, run_id) for run_id in ids]
    keys: list[str] = []
    for _, steps, _ in loaded:
        keys += [s.key for s in steps if s.key not in keys]

    def last(steps: list[StepRecord], key: str) -> StepRecord | None:
        found = [s for s in steps if s.key == key]
        return found[-1] if found else None

    rows = [(key, [last(steps, key) for _, steps, _ in loaded]) for key in keys]
    return render(
        request,
        who,
        "compare.html",
        runs=[run for run, _, _ in loaded],
        rows=rows,
        preview=views.preview,
        duration=views.duration,
    )


async def live_stream(request: Request, who: Viewer) -> Response:
    """SSE notes of changes: every run's (``/live``) or one run's (``/runs/{id}/live``)."""
    run_id = request.path_params.get("run_id")
    if run_id is not None:
        await who.engine.aget_run(run_id)  # another namespace's run is not found
    hub: Hub = request.app.state.dashboard_hub
    return StreamingResponse(
        hub.stream(who.engine, run_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


ROUTES = [
    ("/", runs_page, ["GET"]),
    ("/live", live_stream, ["GET"]),
    ("/runs/bulk", bulk_action, ["POST"]),
    ("/compare", compare_page, ["GET"]),
    ("/runs/{run_id}", run_page, ["GET"]),
    ("/runs/{run_id}/live", live_stream, ["GET"]),
    ("/runs/{run_id}/value", run_value, ["GET"]),
    ("/runs/{run_id}/steps/{key:path}", step_page, ["GET"]),
    ("/runs/{run_id}/artifacts/{key:path}", run_artifact, ["GET"]),
    ("/runs/{run_id}/{action}", run_action, ["POST"]),
]
