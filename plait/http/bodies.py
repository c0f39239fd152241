"""Request bodies: the JSON parser every route uses and the models it fills.

Values are refused here, with a 4xx, when a store could not keep them: lone
surrogates and deep nesting anywhere (``plait.json_limits``), NUL bytes in ids
and names (PostgreSQL text cannot hold one), priorities outside 32 bits.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from plait.errors import WorkflowNotFound
from plait.http.guard import NOT_JSON, NOT_JSON_MESSAGE
from plait.json_limits import MalformedJson, UnsafeJson, parse_json
from plait.usage.models import Budget

PRIORITY_MIN, PRIORITY_MAX = -(2**31), 2**31 - 1
# An id, name or short text a client sends: no NUL byte, bounded length.
Name = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=r"^[^\x00]+$")]
Text = Annotated[str, StringConstraints(max_length=65536, pattern=r"^[^\x00]*$")]


class BodyRefused(HTTPException):
    """A body FastAPI must not parse further, with the plait error code to answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status_code=status, detail=message)
        self.code = code


class SafeJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = parse_json(await self.body())
            except MalformedJson as exc:
                raise BodyRefused(400, "request.malformed", str(exc)) from None
            except UnsafeJson as exc:
                raise BodyRefused(422, "input.invalid", str(exc)) from None
        return self._json


async def refuse_not_json(request: SafeJsonRequest) -> None:
    """Answer a POST whose body is not declared JSON, without acting on it: 400, 404 or 415.

    A malformed body is a 400 and an unknown workflow a 404 whatever the content
    type; otherwise the 415 says which header to add.
    """
    if await request.body():
        await request.json()  # BodyRefused 400 when it is not JSON at all
    workflow_id = request.path_params.get("workflow_id")
    namespaces = getattr(request.app.state, "namespaces", None)
    if workflow_id is not None and namespaces is not None:
        known = {workflow.id for workflow in namespaces.engine.workflows()}
        if workflow_id not in known:
            raise WorkflowNotFound(f"workflow '{workflow_id}' is not registered; GET /api/workflows lists them")
    raise BodyRefused(415, "request.content_type", NOT_JSON_MESSAGE)


class SafeJsonRoute(APIRoute):
    """A route whose JSON body goes through ``plait.json_limits.parse_json``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            safe = SafeJsonRequest(request.scope, request.receive)
            if request.scope.get(NOT_JSON):
                await refuse_not_json(safe)
            return await handler(safe)

        return route


class StartRun(BaseModel):
    """Start a run: the workflow's input, and optionally priority, a delay and metadata."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"input": {"email": "ada@example.com", "plan": "pro"}},
                {"input": {"email": "ada@example.com"}, "priority": 5, "delay_seconds": 60, "metadata": {"by": "ops"}},
            ]
        }
    )

    input: Any = None
    priority: int = Field(default=0, ge=PRIORITY_MIN, le=PRIORITY_MAX)
    delay_seconds: float = Field(default=0, ge=0, le=10 * 366 * 86400, allow_inf_nan=False)
    metadata: dict[str, Any] | None = None
    budget: Budget | None = None  # limits this run's model usage (plait.Budget)
    config: dict[Name, dict[str, Any]] | None = Field(
        default=None, description="settings per step id, e.g. {'summarize': {'max_length': 100}}"
    )


class SendEvent(BaseModel):
    """An event for a run waiting in ``wait_for_event(name)``; ``event_id`` makes a resend harmless."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "payment_received", "payload": {"amount": 42}, "event_id": "evt_1"}]}
    )

    name: Name
    payload: Any = None
    event_id: Name | None = None


class Decision(BaseModel):
    """Approve (with ``data``) or reject (with ``reason``) an approval step, or resume a suspended one."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"step_id": "review", "data": {"note": "looks good"}}, {"step_id": "review", "reason": "no"}]
        }
    )

    step_id: Name
    data: Any = None
    reason: Text = ""


class Cancel(BaseModel):
    reason: Annotated[str, StringConstraints(max_length=4000, pattern=r"^[^\x00]*$")] | None = None

    model_config = {"json_schema_extra": {"examples": [{"reason": "customer asked to stop"}]}}


class Rerun(BaseModel):
    """Fork a new run that reuses the outputs of the steps before ``from_step``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"from_step": "summarize"}]})

    from_step: Name
    config: dict[Name, dict[str, Any]] | None = None
