"""Mounting the engine's HTTP triggers as ``POST /hooks/<path>``.

A trigger belongs to the namespace of the engine that declares it, and its
runs start there. A signed trigger is authenticated by its signature alone; an
unsigned one needs a write token of that namespace, and a token of any other
namespace gets 404, as for any resource that namespace cannot see.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from plait.errors import InputValidationError
from plait.http.auth import Namespaces, caller, needs
from plait.http.errors import ApiError
from plait.http_triggers import HttpTrigger, TriggerRequest, delivery_key, signature_problem
from plait.json_limits import UnsafeJson, check_json


class Accepted(BaseModel):
    run_id: str


def mount_trigger(app: FastAPI, spaces: Namespaces, trigger: HttpTrigger) -> None:
    route = f"/hooks/{trigger.path.strip('/')}"
    engine = spaces.engine

    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        headers = dict(request.headers)
        if trigger.secret is not None:
            problem = signature_problem(trigger, headers, body, engine.clock.now().timestamp())
            if problem is not None:
                raise ApiError(401, "auth.signature", problem)
        else:
            who = await needs("write")(await caller(request))
            if who.namespace != engine.namespace:
                raise ApiError(404, "route.not_found", f"no HTTP trigger at {route} in namespace {who.namespace!r}")
        incoming = TriggerRequest(
            path_params=dict(request.path_params), query=dict(request.query_params), headers=headers, body=body
        )
        value = _input(trigger, incoming)
        try:
            key = delivery_key(trigger, incoming)
        except Exception as exc:  # idempotency_key_from is the app's code: its failure is the request's problem
            raise InputValidationError(f"the trigger's idempotency_key_from failed on this request: {exc}") from exc
        handle = await engine.astart(trigger.workflow, value, idempotency_key=key)
        return JSONResponse({"run_id": handle.id}, status_code=202)

    app.add_api_route(route, receive, methods=["POST"], response_model=Accepted, status_code=202)


def _input(trigger: HttpTrigger, incoming: TriggerRequest) -> Any:
    try:
        value = trigger.input_from(incoming) if trigger.input_from else incoming.json()
        check_json(value)
    except UnsafeJson as exc:
        raise InputValidationError(f"the request does not give the workflow's input: {exc}") from exc
    except (ValueError, LookupError, TypeError, AttributeError) as exc:
        raise InputValidationError(f"the request does not give the workflow's input: {exc!r}") from exc
    return value
