"""Artifacts of runs: rows in the database, bytes inline or in the blob store."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from typing import Any

from plait.artifacts.blobs import BlobStore
from plait.artifacts.encoding import decode, encode
from plait.artifacts.keys import check_key
from plait.artifacts.model import Artifact
from plait.errors import ArtifactInvalid, ArtifactNotFound
from plait.store import artifacts as artifact_table
from plait.store.base import ArtifactRow, Store

# Artifacts smaller than this live in the database row; larger ones in the blob store.
INLINE_LIMIT = 64 * 1024
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")


def segment(value: str) -> str:
    """``value`` as one blob-name segment: itself when safe, else a hash (a run id can be anything)."""
    if _SAFE_SEGMENT.match(value):
        return value
    return "h-" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:40]


class ArtifactStorage:
    """Prepares artifact rows (writing large data to the blob store first) and reads them back."""

    def __init__(self, store: Store, blobs: BlobStore | None, namespace: str, inline_limit: int = INLINE_LIMIT) -> None:
        self.store = store
        self.blobs = blobs
        self.namespace = namespace
        self.inline_limit = inline_limit

    def prepare(
        self, run_id: str, step_id: str, step_key: str, key: str, data: Any, content_type: str | None, now: float
    ) -> ArtifactRow:
        """The row to commit with the step; a large value is written to the blob store now, before that commit."""
        key = check_key(key)
        kind, chosen_type, raw = encode(key, data, content_type)
        if len(raw) < self.inline_limit:
            return ArtifactRow(
                run_id, key, step_id, step_key, kind, chosen_type, len(raw), raw, None, now, self.namespace
            )
        if self.blobs is None:
            raise ArtifactInvalid(
                f"artifact {key!r} is {len(raw)} bytes, over the {self.inline_limit} kept in the database, and this "
                "engine has no blob store: give Engine(blobs='file:///shared/dir' or 's3://bucket/prefix')"
            )
        name = f"{segment(self.namespace)}/{segment(run_id)}/{secrets.token_hex(16)}"
        self.blobs.write(name, raw)
        return ArtifactRow(run_id, key, step_id, step_key, kind, chosen_type, len(raw), None, name, now, self.namespace)

    async def list(self, run_id: str) -> list[Artifact]:
        return [Artifact.from_row(row) for row in await artifact_table.listed(self.store, self.namespace, run_id)]

    async def read_raw(self, run_id: str, key: str) -> tuple[ArtifactRow, bytes]:
        """The row and its bytes; raises ArtifactNotFound."""
        row = await artifact_table.one(self.store, self.namespace, run_id, key)
        if row is None:
            raise ArtifactNotFound(
                f"run {run_id} has no artifact {key[:80]!r}; list them with run.artifacts() "
                "(an artifact is there once the step that put it has completed)"
            )
        if row.data is not None:
            return row, row.data
        if self.blobs is None or row.blob is None:
            raise ArtifactNotFound(
                f"artifact {key!r} of run {run_id} is in a blob store this engine does not know: "
                "give it the same Engine(blobs=...) as the workers"
            )
        return row, await asyncio.to_thread(self.blobs.read, row.blob)

    async def read(self, run_id: str, key: str) -> Any:
        row, raw = await self.read_raw(run_id, key)
        return decode(row.kind, raw)

    async def sweep(self) -> int:
        """Delete blobs no artifact refers to, except those of runs still going; returns how many."""
        if self.blobs is None:
            return 0
        names = await asyncio.to_thread(self.blobs.names, f"{segment(self.namespace)}/")
        if not names:
            return 0
        used = await artifact_table.blobs_in_use(self.store, names)
        going = {segment(run_id) for run_id in await artifact_table.unfinished_runs(self.store, self.namespace)}
        orphans = [n for n in names if n not in used and n.split("/")[1:2] and n.split("/")[1] not in going]
        for name in orphans:
            await asyncio.to_thread(self.blobs.delete, name)
        return len(orphans)
