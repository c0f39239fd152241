"""``GET /api/usage`` (model usage reports) and ``POST /api/runs/{id}/budget`` (raising a run's budget)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from plait.http.api import Namespaces, Reader, Writer
from plait.runs import Run
from plait.usage.models import UsageRow


class RaiseBudget(BaseModel):
    max_cost: float | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=0)


def usage_router() -> APIRouter:
    router = APIRouter()

    @router.get("/api/usage", response_model=list[UsageRow])
    async def usage(
        request: Request,
        who: Reader,
        group_by: Literal["workflow", "model", "day", "step"] = "workflow",
        workflow: str | None = None,
        since: Annotated[float | None, Query(description="epoch seconds")] = None,
        until: Annotated[float | None, Query(description="epoch seconds")] = None,
        since_seconds: Annotated[float | None, Query(ge=0, description="how far back from now")] = None,
    ) -> list[UsageRow]:
        """Tokens, cost, calls and runs per workflow, model, day or step."""
        spaces: Namespaces = request.app.state.namespaces
        start = timedelta(seconds=since_seconds) if since_seconds is not None else since
        return await spaces.get(who.namespace).ausage(workflow=workflow, since=start, until=until, group_by=group_by)

    @router.post("/api/runs/{run_id}/budget", response_model=Run)
    async def raise_budget(run_id: str, body: RaiseBudget, request: Request, who: Writer) -> Run:
        """Raise the run's budget; a run its budget suspended continues."""
        spaces: Namespaces = request.app.state.namespaces
        handle = await spaces.get(who.namespace).araise_budget(
            run_id, max_cost=body.max_cost, max_tokens=body.max_tokens
        )
        return await handle.ainfo()

    return router
