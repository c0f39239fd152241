"""Engine methods for reading the artifacts steps kept with their runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plait.artifacts import Artifact
from plait.artifacts.encoding import decode
from plait.artifacts.keys import check_key
from plait.store.base import ArtifactRow, RunRow

if TYPE_CHECKING:
    from plait.loop_thread import LoopThread
    from plait.worker import Worker


class ArtifactsMixin:
    """Part of ``Engine``: ``artifacts(run_id)`` and ``artifact(run_id, key)``."""

    # Provided by Engine.
    _loop: LoopThread
    _worker: Worker

    async def _get_row(self, run_id: str) -> RunRow:
        raise NotImplementedError

    def artifacts(self, run_id: str) -> list[Artifact]:
        """The run's artifacts (key, size, content type, step, time), oldest first; raises RunNotFound."""
        return self._loop.run(self._artifacts_of(run_id))

    async def aartifacts(self, run_id: str) -> list[Artifact]:
        return await self._loop.run_async(self._artifacts_of(run_id))

    def artifact(self, run_id: str, key: str) -> Any:
        """Artifact ``key`` of the run as it was put (bytes, str or JSON); raises ArtifactNotFound."""
        return self._loop.run(self._artifact(run_id, key))

    async def aartifact(self, run_id: str, key: str) -> Any:
        return await self._loop.run_async(self._artifact(run_id, key))

    async def _artifacts_of(self, run_id: str) -> list[Artifact]:
        await self._get_row(run_id)  # in this namespace, or RunNotFound
        return await self._worker.artifacts.list(run_id)

    async def _artifact_bytes(self, run_id: str, key: str) -> tuple[ArtifactRow, bytes]:
        """The stored row and bytes of one artifact (for the HTTP API)."""
        check_key(key)
        await self._get_row(run_id)
        return await self._worker.artifacts.read_raw(run_id, key)

    async def _artifact(self, run_id: str, key: str) -> Any:
        row, raw = await self._artifact_bytes(run_id, key)
        return decode(row.kind, raw)
