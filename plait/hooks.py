"""Lifecycle hooks: user callbacks around runs and steps that can never break a run."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("plait.hooks")


@dataclass(frozen=True)
class HookInfo:
    """What a hook is told: the run, and for step hooks the step, attempt and its output or error."""

    run_id: str
    workflow_id: str
    workflow_version: str
    step_id: str | None = None
    step_key: str | None = None
    attempt: int | None = None
    status: str | None = None
    output: Any = None
    error: dict[str, Any] | None = None


Hook = Callable[[HookInfo], Any] | Callable[[HookInfo], Awaitable[Any]]


@dataclass(frozen=True)
class Hooks:
    """Callbacks around a run's life; each gets a ``HookInfo``. Sync or async; a hook that raises is logged.

    ``before_run`` fires when a worker starts a run from its beginning,
    ``after_run`` when it ends (succeeded or failed), ``before_step`` before each
    attempt, ``after_step`` after a successful one, ``on_step_error`` after a failed one.
    Keep sync hooks quick: they run on the engine's event loop.
    """

    before_run: Hook | None = None
    after_run: Hook | None = None
    before_step: Hook | None = None
    after_step: Hook | None = None
    on_step_error: Hook | None = None


class Observer(Protocol):
    """Something that watches runs and steps (hooks, tracing)."""

    async def run_started(self, info: HookInfo) -> None: ...
    async def run_ended(self, info: HookInfo) -> None: ...
    async def step_started(self, info: HookInfo) -> None: ...
    async def step_ended(self, info: HookInfo) -> None: ...


@dataclass
class HookRunner:
    """Calls every registered ``Hooks`` of the engine and of the run's workflow."""

    hooks: list[Hooks] = field(default_factory=list)

    async def _call(self, name: str, info: HookInfo) -> None:
        for hooks in self.hooks:
            hook = getattr(hooks, name)
            if hook is None:
                continue
            try:
                result = hook(info)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except BaseException:  # a hook's bug (even SystemExit) is logged and never breaks the run
                log.exception("plait hook %s failed for run %s (step %s)", name, info.run_id, info.step_id)

    async def run_started(self, info: HookInfo) -> None:
        await self._call("before_run", info)

    async def run_ended(self, info: HookInfo) -> None:
        await self._call("after_run", info)

    async def step_started(self, info: HookInfo) -> None:
        await self._call("before_step", info)

    async def step_ended(self, info: HookInfo) -> None:
        await self._call("after_step" if info.error is None else "on_step_error", info)
