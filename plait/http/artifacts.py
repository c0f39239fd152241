"""Artifact routes: a run's list, and one artifact's content served with its content type."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response

from plait.artifacts import Artifact
from plait.http.auth import Namespaces, Reader


def mount_artifacts(app: FastAPI, spaces: Namespaces) -> None:
    @app.get("/api/runs/{run_id}/artifacts", response_model=list[Artifact])
    async def list_artifacts(run_id: str, who: Reader) -> list[Artifact]:
        return await spaces.get(who.namespace).aartifacts(run_id)

    @app.get(
        "/api/runs/{run_id}/artifacts/{key:path}",
        response_class=Response,
        responses={200: {"content": {"application/octet-stream": {}}, "description": "the artifact's bytes"}},
    )
    async def read_artifact(run_id: str, key: str, who: Reader) -> Response:
        engine = spaces.get(who.namespace)
        row, raw = await engine._loop.run_async(engine._artifact_bytes(run_id, key))
        # nosniff and attachment: an artifact holding HTML must never run as a page of this origin.
        headers = {"X-Content-Type-Options": "nosniff", "Content-Disposition": "attachment"}
        return Response(content=raw, media_type=row.content_type, headers=headers)
