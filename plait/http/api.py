"""``plait.http.create_app(engine)``: the REST API, live event streams and HTTP triggers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from plait.engine import Engine
from plait.errors import InputValidationError
from plait.http.artifacts import mount_artifacts
from plait.http.auth import Admin, Namespaces, Reader, Writer, needs
from plait.http.bodies import Cancel, Decision, Rerun, SafeJsonRoute, SendEvent, StartRun
from plait.http.documents import documents_router
from plait.http.errors import install
from plait.http.guard import BodyDeadline, BodyLimit, RequestGuard
from plait.http.triggers import mount_trigger
from plait.runs import Event, EventPage, Page, Run, RunStatus, StepRecord
from plait.webhooks import DeadLetter

DEFAULT_BODY_LIMIT = 1024 * 1024
DEFAULT_BODY_TIMEOUT = 30.0
MAX_SEQ = 2**63 - 1
# A feed cursor as the stores write them: an event id, or "<transaction>:<event id>".
FEED_CURSOR = re.compile(r"[0-9]{1,19}(:[0-9]{1,19})?")


class RunDetail(BaseModel):
    run: Run
    steps: list[StepRecord]


class WorkflowInfo(BaseModel):
    id: str
    version: str
    graph: dict[str, Any]


class Delivered(BaseModel):
    delivered: bool


class RunCount(BaseModel):
    count: int


def create_app(
    engine: Engine,
    *,
    max_body_bytes: int = DEFAULT_BODY_LIMIT,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    allowed_hosts: Sequence[str] = (),
) -> FastAPI:
    """The HTTP API of ``engine`` under ``/api``, with OpenAPI at ``/openapi.json``.

    Once a token was ever created (``plait tokens create``) every request
    needs ``Authorization: Bearer <token>``, even after all are revoked; each
    token sees only its namespace, and its scope (read < write < admin) limits
    what it may do. Without tokens the API answers only on a loopback address.
    ``Host`` must be a loopback name, the address the request arrived on, or
    match ``allowed_hosts`` (``"api.example.com"``, ``"*.example.com"``, ``"*"``).
    Bodies over ``max_body_bytes`` get 413, bodies slower than
    ``body_timeout`` seconds 408.
    """
    app = FastAPI(title="plait", version=_version(), docs_url="/api/docs", openapi_url="/openapi.json")
    app.router.route_class = SafeJsonRoute
    install(app)
    # Added innermost first: the guard sees a request before anything reads its body.
    app.add_middleware(BodyDeadline, seconds=body_timeout)
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(RequestGuard, allowed_hosts=tuple(allowed_hosts))
    spaces = Namespaces(engine)
    app.state.namespaces = spaces
    from plait.http.schedules import schedules_router  # they build on this module's auth dependencies
    from plait.http.usage import usage_router

    app.include_router(usage_router())
    app.include_router(schedules_router())

    @app.get("/api/workflows", response_model=list[WorkflowInfo])
    async def list_workflows(who: Reader) -> list[WorkflowInfo]:
        return [WorkflowInfo(id=w.id, version=w.version, graph=w.to_dict()) for w in engine.workflows()]

    @app.post("/api/workflows/{workflow_id}/runs", response_model=Run, status_code=201)
    async def start_run(
        workflow_id: str,
        body: StartRun,
        who: Writer,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> Run:
        target = spaces.get(who.namespace)
        handle = await target.astart(
            workflow_id,
            body.input,
            idempotency_key=idempotency_key,
            priority=body.priority,
            delay=body.delay_seconds,
            metadata=body.metadata,
            budget=body.budget,
            config=body.config,
        )
        return await handle._ainfo_as_started()  # no second trip to the engine's loop, which a step may hold

    @app.get("/api/runs", response_model=Page[Run])
    async def list_runs(
        who: Reader,
        workflow: str | None = None,
        status: Annotated[list[RunStatus] | None, Query()] = None,
        parent: str | None = None,
        order: Literal["-created", "created", "-finished"] = "-created",
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: Annotated[str | None, Query(max_length=2048)] = None,
    ) -> Page[Run]:
        """Runs in ``order``; repeat ``status`` for several (``?status=failed&status=cancelled``)."""
        return await spaces.get(who.namespace).alist_runs(
            workflow=workflow, status=status or None, parent=parent, order=order, limit=limit, cursor=cursor
        )

    @app.get("/api/runs/count", response_model=RunCount)
    async def count_runs(
        who: Reader,
        workflow: str | None = None,
        status: Annotated[list[RunStatus] | None, Query()] = None,
    ) -> RunCount:
        """How many runs have those statuses (repeat ``status``) and that workflow."""
        target = spaces.get(who.namespace)
        return RunCount(count=await target.acount_runs(workflow=workflow, status=status or None))

    @app.get("/api/runs/{run_id}", response_model=RunDetail)
    async def get_run(run_id: str, who: Reader) -> RunDetail:
        handle = await spaces.get(who.namespace).aget_run(run_id)
        return RunDetail(run=await handle.ainfo(), steps=await handle.asteps())

    @app.post("/api/runs/{run_id}/cancel", response_model=Run)
    async def cancel_run(run_id: str, who: Writer, body: Cancel | None = None) -> Run:
        """Cancel the run and its child runs; the optional ``reason`` is stored on the run and in its event."""
        target = spaces.get(who.namespace)
        await target.acancel(run_id, reason=body.reason if body is not None else None)
        return await (await target.aget_run(run_id)).ainfo()

    @app.post("/api/runs/{run_id}/retry", response_model=Run)
    async def retry_run(run_id: str, who: Writer) -> Run:
        return await (await spaces.get(who.namespace).aretry(run_id)).ainfo()

    @app.post("/api/runs/{run_id}/rerun", response_model=Run, status_code=201)
    async def rerun(run_id: str, body: Rerun, who: Writer) -> Run:
        target = spaces.get(who.namespace)
        return await (await target.arerun_from(run_id, body.from_step, config=body.config)).ainfo()

    mount_artifacts(app, spaces)

    @app.post("/api/runs/{run_id}/events", response_model=Delivered)
    async def send_event(run_id: str, body: SendEvent, who: Writer) -> Delivered:
        target = spaces.get(who.namespace)
        return Delivered(delivered=await target.asend_event(run_id, body.name, body.payload, event_id=body.event_id))

    @app.post("/api/runs/{run_id}/approve", response_model=Delivered)
    async def approve(run_id: str, body: Decision, who: Writer) -> Delivered:
        return Delivered(delivered=await spaces.get(who.namespace).aapprove(run_id, body.step_id, body.data))

    @app.post("/api/runs/{run_id}/reject", response_model=Delivered)
    async def reject(run_id: str, body: Decision, who: Writer) -> Delivered:
        return Delivered(delivered=await spaces.get(who.namespace).areject(run_id, body.step_id, body.reason))

    @app.post("/api/runs/{run_id}/resume", response_model=Delivered)
    async def resume(run_id: str, body: Decision, who: Writer) -> Delivered:
        await spaces.get(who.namespace).aresume(run_id, body.step_id, body.data)
        return Delivered(delivered=True)

    @app.get("/api/runs/{run_id}/events", response_class=StreamingResponse)
    async def run_events(
        run_id: str,
        who: Reader,
        after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        """Server-Sent Events: the run's history, then live events until it ends; resume with Last-Event-ID."""
        start = after if last_event_id is None else _event_seq(last_event_id)
        handle = await spaces.get(who.namespace).aget_run(run_id)

        async def stream() -> AsyncIterator[str]:
            async for event in handle.aevents(after=start):
                yield sse(event, str(event.seq))

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/api/events", response_class=StreamingResponse)
    async def all_events(
        who: Reader,
        last_event_id: Annotated[str | None, Header()] = None,
        after: str | None = None,
    ) -> StreamingResponse:
        """Server-Sent Events of the whole namespace, live; the event id is a cursor to resume from."""
        target = spaces.get(who.namespace)
        # The first page is read before answering, so a bad cursor is a 4xx, not a stream that breaks.
        first = await _first_page(target, last_event_id or after)

        async def stream() -> AsyncIterator[str]:
            page = first
            while True:
                for event in page.items:
                    yield sse(event, page.cursor or "")
                if not page.items:
                    await asyncio.sleep(0.1)
                page = await target.aevents(page.cursor, limit=500)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/api/dead-letters", response_model=list[DeadLetter])
    async def dead_letters(who: Admin) -> list[DeadLetter]:
        return await asyncio.to_thread(spaces.get(who.namespace).dead_letters)

    @app.post("/api/dead-letters/replay", response_model=dict[str, int])
    async def replay(who: Admin) -> dict[str, int]:
        return {"delivered": await asyncio.to_thread(spaces.get(who.namespace).replay_dead_letters)}

    @app.post("/api/tick", response_model=dict[str, Any])
    async def tick(who: Admin, budget: Annotated[float, Query(gt=0, le=600)] = 10.0) -> dict[str, Any]:
        """Do what is due (schedules, timers, ready runs) within ``budget`` seconds; for cron-driven hosts."""
        summary = await spaces.get(who.namespace).atick(budget=timedelta(seconds=budget))
        return summary.model_dump()

    app.include_router(documents_router(spaces.get, needs))
    for trigger in engine._http_triggers:
        mount_trigger(app, spaces, trigger)
    from plait.dashboard import mount_dashboard  # imported here: the dashboard imports plait.http

    mount_dashboard(app)
    return app


def sse(event: Event, event_id: str) -> str:
    return f"id: {event_id}\nevent: {event.type}\ndata: {event.model_dump_json()}\n\n"


def _event_seq(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise InputValidationError(f"Last-Event-ID must be an event number from this stream, got {text[:40]!r}")
    return int(text)


async def _first_page(target: Engine, cursor: str | None) -> EventPage:
    if cursor is not None and not (FEED_CURSOR.fullmatch(cursor) and max(map(int, cursor.split(":"))) <= MAX_SEQ):
        raise InputValidationError(f"the event cursor {cursor[:40]!r} is not one this feed gave out")
    try:
        return await target.aevents(cursor, limit=500)
    except (ValueError, OverflowError) as exc:
        raise InputValidationError(f"the event cursor {cursor!r} is not one this feed gave out") from exc


def _version() -> str:
    from plait import __version__

    return __version__
