"""``plait.http.create_app(engine)``: the REST API, live event streams and HTTP triggers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from plait.engine import Engine
from plait.errors import InputValidationError
from plait.http.errors import ApiError, BodyLimit, install
from plait.runs import Event, Page, Run, RunStatus, StepRecord
from plait.store import tokens as token_table
from plait.usage.models import Budget
from plait.webhooks import DeadLetter

DEFAULT_BODY_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class Caller:
    """Who is calling: the namespace and scope of their token (admin of the app's namespace without tokens)."""

    namespace: str
    scope: str


@dataclass(frozen=True)
class TriggerRequest:
    """What an HTTP trigger's ``input_from`` and ``idempotency_key_from`` get."""

    path_params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass(frozen=True)
class HttpTrigger:
    path: str
    workflow: Any
    input_from: Callable[[TriggerRequest], Any] | None
    idempotency_key_from: Callable[[TriggerRequest], str | None] | None
    secret: str | None
    signature_header: str


class StartRun(BaseModel):
    input: Any = None
    priority: int = 0
    delay_seconds: float = Field(default=0, ge=0)
    metadata: dict[str, Any] | None = None
    budget: Budget | None = None  # limits this run's model usage (plait.Budget)


class RunDetail(BaseModel):
    run: Run
    steps: list[StepRecord]


class WorkflowInfo(BaseModel):
    id: str
    version: str
    graph: dict[str, Any]


class SendEvent(BaseModel):
    name: str
    payload: Any = None
    event_id: str | None = None


class Decision(BaseModel):
    step_id: str
    data: Any = None
    reason: str = ""


class Rerun(BaseModel):
    from_step: str


class Delivered(BaseModel):
    delivered: bool


class Accepted(BaseModel):
    run_id: str


SCOPE_ORDER = {"read": 0, "write": 1, "admin": 2}


@dataclass
class Namespaces:
    """One engine per namespace a token may use, sharing the app engine's database and workflows."""

    engine: Engine
    others: dict[str, Engine] = field(default_factory=dict)
    tokens_checked_at: float = -1e9
    tokens_exist: bool = False

    def get(self, namespace: str) -> Engine:
        if namespace == self.engine.namespace:
            return self.engine
        if namespace not in self.others:
            other = Engine(self.engine.url, namespace=namespace, worker=False)
            other.register(*self.engine.workflows())
            self.others[namespace] = other
        return self.others[namespace]

    async def auth_enabled(self) -> bool:
        # Cached briefly: a token created with the CLI takes effect within a second.
        if time.monotonic() - self.tokens_checked_at > 1.0:
            self.tokens_exist = await asyncio.to_thread(
                lambda: self.engine._loop.run(token_table.any_active(self.engine._store))
            )
            self.tokens_checked_at = time.monotonic()
        return self.tokens_exist


async def caller(request: Request) -> Caller:
    """The caller's namespace and scope, from its bearer token (admin of the app's namespace without tokens)."""
    spaces: Namespaces = request.app.state.namespaces
    engine = spaces.engine
    if not await spaces.auth_enabled():
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


def create_app(engine: Engine, *, max_body_bytes: int = DEFAULT_BODY_LIMIT) -> FastAPI:
    """The HTTP API of ``engine`` under ``/api``, with OpenAPI at ``/openapi.json``.

    Requests carry ``Authorization: Bearer <token>`` once any token exists
    (``plait tokens create``); each token sees only its namespace, and its
    scope (read < write < admin) limits what it may do.
    """
    app = FastAPI(title="plait", version=_version(), docs_url="/api/docs", openapi_url="/openapi.json")
    install(app)
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    spaces = Namespaces(engine)
    app.state.namespaces = spaces
    from plait.http.usage import usage_router  # it builds on this module's auth dependencies

    app.include_router(usage_router())

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
        )
        return await handle.ainfo()

    @app.get("/api/runs", response_model=Page[Run])
    async def list_runs(
        who: Reader,
        workflow: str | None = None,
        status: RunStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: str | None = None,
    ) -> Page[Run]:
        return await spaces.get(who.namespace).alist_runs(workflow=workflow, status=status, limit=limit, cursor=cursor)

    @app.get("/api/runs/{run_id}", response_model=RunDetail)
    async def get_run(run_id: str, who: Reader) -> RunDetail:
        handle = await spaces.get(who.namespace).aget_run(run_id)
        return RunDetail(run=await handle.ainfo(), steps=await handle.asteps())

    @app.post("/api/runs/{run_id}/cancel", response_model=Run)
    async def cancel_run(run_id: str, who: Writer) -> Run:
        target = spaces.get(who.namespace)
        await target.acancel(run_id)
        return await (await target.aget_run(run_id)).ainfo()

    @app.post("/api/runs/{run_id}/retry", response_model=Run)
    async def retry_run(run_id: str, who: Writer) -> Run:
        return await (await spaces.get(who.namespace).aretry(run_id)).ainfo()

    @app.post("/api/runs/{run_id}/rerun", response_model=Run, status_code=201)
    async def rerun(run_id: str, body: Rerun, who: Writer) -> Run:
        return await (await spaces.get(who.namespace).arerun_from(run_id, body.from_step)).ainfo()

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
        after: Annotated[int, Query(ge=0)] = 0,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        """Server-Sent Events: the run's history, then live events until it ends; resume with Last-Event-ID."""
        handle = await spaces.get(who.namespace).aget_run(run_id)
        start = int(last_event_id) if last_event_id and last_event_id.isdigit() else after

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
        cursor = last_event_id or after

        async def stream() -> AsyncIterator[str]:
            position = cursor
            while True:
                page = await target.aevents(position, limit=500)
                for event in page.items:
                    yield sse(event, page.cursor or "")
                position = page.cursor
                if not page.items:
                    await asyncio.sleep(0.1)

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

    for trigger in engine._http_triggers:
        mount_trigger(app, engine, trigger)
    return app


def sse(event: Event, event_id: str) -> str:
    return f"id: {event_id}\nevent: {event.type}\ndata: {event.model_dump_json()}\n\n"


def mount_trigger(app: FastAPI, engine: Engine, trigger: HttpTrigger) -> None:
    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        if trigger.secret is not None:
            given = request.headers.get(trigger.signature_header, "")
            expected = "sha256=" + hmac.new(trigger.secret.encode(), body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(given, expected):
                raise ApiError(401, "auth.signature", f"the {trigger.signature_header} signature does not match")
        else:
            await needs("write")(await caller(request))
        incoming = TriggerRequest(
            path_params=dict(request.path_params),
            query=dict(request.query_params),
            headers=dict(request.headers),
            body=body,
        )
        try:
            value = trigger.input_from(incoming) if trigger.input_from else incoming.json()
        except (ValueError, KeyError, TypeError) as exc:
            raise InputValidationError(f"the request does not give the workflow's input: {exc}") from exc
        key = trigger.idempotency_key_from(incoming) if trigger.idempotency_key_from else None
        key = key or request.headers.get("idempotency-key")
        handle = await engine.astart(trigger.workflow, value, idempotency_key=key)
        return JSONResponse({"run_id": handle.id}, status_code=202)

    app.add_api_route(f"/hooks/{trigger.path.strip('/')}", receive, methods=["POST"], response_model=Accepted)


def _version() -> str:
    from plait import __version__

    return __version__
