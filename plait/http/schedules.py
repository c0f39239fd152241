"""``/api/schedules``: list cron schedules, pause, resume and trigger them (what ``plait schedules`` does)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import APIRouter, Request
from pydantic import BaseModel

from plait.engine import Engine
from plait.http.auth import Namespaces, Reader, Writer
from plait.schedules import Schedule


class Triggered(BaseModel):
    run_id: str


def schedules_router() -> APIRouter:
    router = APIRouter()

    @router.get("/api/schedules", response_model=list[Schedule])
    async def list_schedules(request: Request, who: Reader) -> list[Schedule]:
        """The namespace's schedules with their next due time."""
        spaces: Namespaces = request.app.state.namespaces
        return await asyncio.to_thread(spaces.get(who.namespace).schedules)

    @router.post("/api/schedules/{schedule_id}/pause", response_model=Schedule)
    async def pause(schedule_id: str, request: Request, who: Writer) -> Schedule:
        """Stop firing; due times while paused are skipped."""
        engine = spaces_of(request).get(who.namespace)
        return await asyncio.to_thread(_after, engine, engine.pause_schedule, schedule_id)

    @router.post("/api/schedules/{schedule_id}/resume", response_model=Schedule)
    async def resume(schedule_id: str, request: Request, who: Writer) -> Schedule:
        """Fire again from the next due time after now."""
        engine = spaces_of(request).get(who.namespace)
        return await asyncio.to_thread(_after, engine, engine.resume_schedule, schedule_id)

    @router.post("/api/schedules/{schedule_id}/trigger", response_model=Triggered)
    async def trigger(schedule_id: str, request: Request, who: Writer) -> Triggered:
        """Start the schedule's workflow once, now."""
        engine = spaces_of(request).get(who.namespace)
        return Triggered(run_id=await asyncio.to_thread(engine.trigger_schedule, schedule_id))

    return router


def _after(engine: Engine, action: Callable[[str], None], schedule_id: str) -> Schedule:
    """Do ``action`` (it raises for an unknown schedule), then read the schedule as it now stands."""
    action(schedule_id)
    return next(s for s in engine.schedules() if s.id == schedule_id)


def spaces_of(request: Request) -> Namespaces:
    spaces: Namespaces = request.app.state.namespaces
    return spaces
