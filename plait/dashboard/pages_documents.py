"""Stored workflow documents: the list, one document's blocks, and its versions with the ops behind each."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from plait.dashboard import views
from plait.dashboard.app import render
from plait.dashboard.auth import Viewer
from plait.errors import InputValidationError


async def documents_page(request: Request, who: Viewer) -> Response:
    documents = sorted(await who.engine.adocuments(), key=lambda d: d.id)
    return render(request, who, "documents.html", documents=documents)


async def document_page(request: Request, who: Viewer) -> Response:
    engine = who.engine
    document_id = request.path_params["document_id"]
    raw = request.query_params.get("version") or None
    try:
        version = None if raw is None else int(raw)
    except ValueError as exc:
        raise InputValidationError("version must be a whole number") from exc
    document = await engine.adocument(document_id, version)
    versions = await engine.adocument_versions(document_id)
    shown = version if version is not None else versions[-1].version
    return render(
        request,
        who,
        "document.html",
        document=document,
        versions=versions[::-1],
        shown=shown,
        latest=versions[-1].version,
        registered=document.id in {w.id for w in engine.workflows()},
        preview=views.preview,
    )


ROUTES = [
    ("/documents", documents_page, ["GET"]),
    ("/documents/{document_id}", document_page, ["GET"]),
]
