"""``GET /api/usage`` (model usage reports) and ``POST /api/runs/{id}/budget`` (raising a run's budget)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from plait.http.auth import Namespaces, Reader, Writer
from plait.runs import Run
from plait.usage.models import UsageRow


class RaiseBudget(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{"max_cost": 5.0}, {"max_tokens": 200000}]}}

    max_cost: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_tokens: int | None = Field(default=None, ge=0)


def usage_router() -> APIRouter:
    router = APIRouter()

    @router.get("/api/usage", response_model=list[UsageRow])
    async def usage(
        request: Request,
        who: Reader,
        group_by: Literal["workflow", "model", "day", "step"] = "workflow",
        workflow: str | None = None,
        since: Annotated[float | None, Query(description="epoch seconds", allow_inf_nan=False)] = None,
        until: Annotated[float | None, Query(description="epoch seconds", allow_inf_nan=False)] = None,
        since_seconds: Annotated[
            float | None, Query(ge=0, description="how far back from now", allow_inf_nan=False)
        ] = None,
    ) -> list[UsageRow]:
        """Tokens, cost, calls and runs per workflow, model, day or step."""
        spaces: Namespaces = request.app.state.namespaces
        engine = spaces.get(who.namespace)
        start = engine.clock.now().timestamp() - since_seconds if since_seconds is not None else since
        return await engine.ausage(workflow=workflow, since=start, until=until, group_by=group_by)

    @router.post("/api/runs/{run_id}/budget", response_model=Run)
    async def raise_budget(run_id: str, body: RaiseBudget, request: Request, who: Writer) -> Run:
        """Raise the run's budget; a run its budget suspended continues."""
        spaces: Namespaces = request.app.state.namespaces
        handle = await spaces.get(who.namespace).araise_budget(
            run_id, max_cost=body.max_cost, max_tokens=body.max_tokens
        )
        return await handle.ainfo()

    return router
