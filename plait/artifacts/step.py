"""``ctx.artifacts``: what a step reads and writes as named artifacts of its run."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from plait.artifacts.encoding import decode
from plait.errors import RunStateError
from plait.store.base import ArtifactRow

if TYPE_CHECKING:
    from plait.context import Context


class StepArtifacts:
    """Put artifacts (kept when the step completes) and get those of earlier steps of the run."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._execution = ctx._execution

    def put(self, key: str, data: Any, content_type: str | None = None) -> None:
        """Keep ``data`` (bytes, str, a Pydantic model or JSON-able) as artifact ``key`` of this run.

        It is committed with this step's result: an attempt that fails keeps
        nothing, and a later ``put`` of the same key replaces it. Data above
        64 KiB goes to the blob store, written before the step commits.
        """
        ctx = self._ctx
        storage = self._execution.host.artifacts
        now = self._execution.host.clock.now().timestamp()
        row = storage.prepare(ctx.run_id, ctx.step_id, ctx.step_key, key, data, content_type, now)
        self._execution.pending_artifacts.setdefault(ctx.step_key, {})[row.key] = row

    async def aput(self, key: str, data: Any, content_type: str | None = None) -> None:
        """Async twin of ``put``: a large value is written to the blob store off the event loop."""
        await asyncio.to_thread(self.put, key, data, content_type)

    def _pending(self, key: str) -> ArtifactRow | None:
        return self._execution.pending_artifacts.get(self._ctx.step_key, {}).get(key)

    def get(self, key: str) -> Any:
        """Artifact ``key`` as it was put (bytes, str, or JSON: a model comes back as its dict).

        Reads what earlier steps of this run put, and this step's own puts.
        Raises ArtifactNotFound. In an ``async def`` step use ``await ctx.artifacts.aget(key)``.
        """
        pending = self._pending(key)
        if pending is not None and pending.data is not None:
            return decode(pending.kind, pending.data)
        loop = self._execution.loop
        if _on_loop(loop):
            raise RunStateError(
                "ctx.artifacts.get() would block the event loop in an async step: use await ctx.artifacts.aget(key)"
            )
        return asyncio.run_coroutine_threadsafe(self.aget(key), loop).result()

    async def aget(self, key: str) -> Any:
        """Async twin of ``get``."""
        pending = self._pending(key)
        storage = self._execution.host.artifacts
        if pending is not None:
            if pending.data is not None:
                return decode(pending.kind, pending.data)
            assert storage.blobs is not None and pending.blob is not None
            return decode(pending.kind, await asyncio.to_thread(storage.blobs.read, pending.blob))
        return await storage.read(self._ctx.run_id, key)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
