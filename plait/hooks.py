"""Lifecycle hooks: user callbacks around runs and steps that can never break a run."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

log = logging.getLogger("plait.hooks")


@dataclass(frozen=True)
class HookInfo:
    """What a hook is told: the run, and for step hooks the step, attempt and its output or error.

    ``on_hook_error`` is told the failing hook's name in ``hook``, what it raised in
    ``exception`` and ``error`` (``{"type", "message"}``), with the rest as that hook saw it.
    """

    run_id: str
    workflow_id: str
    workflow_version: str
    step_id: str | None = None
    step_key: str | None = None
    attempt: int | None = None
    status: str | None = None
    output: Any = None
    error: dict[str, Any] | None = None
    hook: str | None = None
    exception: BaseException | None = None


Hook = Callable[[HookInfo], Any] | Callable[[HookInfo], Awaitable[Any]]


@dataclass(frozen=True)
class Hooks:
    """Callbacks around a run's life; each gets a ``HookInfo``. Sync or async; a hook that raises is logged.

    ``before_run`` fires when a worker starts a run from its beginning,
    ``after_run`` when it ends (succeeded or failed), ``before_step`` before each
    attempt, ``after_step`` after a successful one, ``on_step_error`` after a failed one.
    ``on_run_created`` fires in the process that created a run (``start``, a
    schedule, a completion trigger), ``on_run_cancelled`` in the one that cancelled
    it (once per run, children included; ``status`` is ``"cancelled"``).
    ``on_hook_error`` is told when any other hook raises; the run goes on.
    Keep sync hooks quick: they run on the engine's event loop.
    """

    before_run: Hook | None = None
    after_run: Hook | None = None
    before_step: Hook | None = None
    after_step: Hook | None = None
    on_step_error: Hook | None = None
    on_run_created: Hook | None = None
    on_run_cancelled: Hook | None = None
    on_hook_error: Hook | None = None


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
            except BaseException as exc:  # a hook's bug (even SystemExit) is logged and never breaks the run
                log.exception("plait hook %s failed for run %s (step %s)", name, info.run_id, info.step_id)
                if name != "on_hook_error":  # an on_hook_error that raises is only logged: no loop
                    failed = replace(
                        info, hook=name, exception=exc, error={"type": type(exc).__name__, "message": str(exc)}
                    )
                    await self._call("on_hook_error", failed)

    @property
    def active(self) -> bool:
        return bool(self.hooks)

    async def run_created(self, info: HookInfo) -> None:
        await self._call("on_run_created", info)

    async def run_cancelled(self, info: HookInfo) -> None:
        await self._call("on_run_cancelled", info)

    async def run_started(self, info: HookInfo) -> None:
        await self._call("before_run", info)

    async def run_ended(self, info: HookInfo) -> None:
        await self._call("after_run", info)

    async def step_started(self, info: HookInfo) -> None:
        await self._call("before_step", info)

    async def step_ended(self, info: HookInfo) -> None:
        await self._call("after_step" if info.error is None else "on_step_error", info)
