"""The documents API: the connector catalog, stored documents, patches (``If-Match`` / 412) and runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, Response
from pydantic import BaseModel, ConfigDict, Field

from plait.documents.model import WorkflowDocument
from plait.documents.ops import PatchResult
from plait.engine_documents import DocumentVersion
from plait.errors import DocumentInvalid
from plait.http.bodies import SafeJsonRoute
from plait.http.errors import ApiError
from plait.runs import Run

if TYPE_CHECKING:
    from plait.engine import Engine


ADD_PAUSE = {"op": "add_block", "id": "pause", "type": "wait.duration", "params": {"seconds": 60}}
DOCUMENT_EXAMPLE = {
    "id": "follow-up",
    "input": {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]},
    "blocks": [{"id": "pause", "type": "wait.duration", "params": {"seconds": 3600}}],
    "output": {"email": "{{input.email}}"},
}


class StoredDocument(BaseModel):
    document: WorkflowDocument
    version: int


class Saved(BaseModel):
    id: str
    version: int


class PatchRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ops": [{"op": "add_block", "id": "pause", "type": "wait.duration", "params": {"seconds": 60}}],
                    "actor": "user",
                }
            ]
        }
    )

    ops: list[Any] = Field(description="patch operations (see GET /api/connectors for their schema)")
    actor: Literal["llm", "user"] = "llm"


class StartDocumentRun(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"input": {"email": "ada@example.com"}}]})

    input: Any = None
    version: int | None = Field(default=None, description="the stored version to run (default: the latest)")
    priority: int = 0
    metadata: dict[str, Any] | None = None


def _expected(if_match: str | None) -> int | None:
    """The version in ``If-Match`` (``3`` or ``"3"``); 412 for anything that cannot be a version."""
    if if_match is None:
        return None
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or len(text) > 12:
        raise ApiError(412, "document.version_conflict", 'If-Match must be a document version number, e.g. "3"')
    return int(text)


def _conflict(error: DocumentInvalid) -> ApiError | None:
    if any(p.get("code") == "version_conflict" for p in error.problems):
        return ApiError(412, "document.version_conflict", error.message, error.problems)
    return None


Caller = Any
Needs = Callable[[str], Callable[..., Awaitable[Caller]]]


def documents_router(engine_for: Callable[[str], Engine], needs: Needs) -> APIRouter:
    """Routes under /api for connectors and documents; ``engine_for(namespace)`` picks the caller's engine."""
    router = APIRouter(prefix="/api", tags=["documents"], route_class=SafeJsonRoute)
    # Dependencies as defaults: annotations are strings here, resolved in this module's globals.
    read, write = Depends(needs("read")), Depends(needs("write"))

    def target(who: Caller) -> Engine:
        return engine_for(who.namespace)

    @router.get("/connectors", response_model=dict[str, Any])
    async def connectors(who: Caller = read) -> dict[str, Any]:
        """The catalog an LLM reads: connectors (no hidden params), built-in blocks and the op schema."""
        return target(who).registry.describe()

    @router.get("/documents", response_model=list[DocumentVersion])
    async def list_documents(who: Caller = read) -> list[DocumentVersion]:
        return await target(who).adocuments()

    @router.get("/documents/{document_id}", response_model=StoredDocument)
    async def get_document(
        document_id: str, response: Response, who: Caller = read, version: int | None = None
    ) -> StoredDocument:
        engine = target(who)
        versions = await engine.adocument_versions(document_id)
        stored = await engine.adocument(document_id, version)
        number = version if version is not None else (versions[-1].version if versions else 0)
        response.headers["ETag"] = f'"{number}"'
        return StoredDocument(document=stored, version=number)

    @router.put("/documents/{document_id}", response_model=Saved)
    async def put_document(
        document_id: str,
        response: Response,
        body: Annotated[dict[str, Any], Body(examples=[DOCUMENT_EXAMPLE])],
        who: Caller = write,
        if_match: Annotated[str | None, Header()] = None,
    ) -> Saved:
        """Store a new version (it must compile); ``If-Match: <version>`` guards against lost updates."""
        document = WorkflowDocument.parse(body)
        if document.id != document_id:
            raise ApiError(
                422, "input.invalid", f"the document's id {document.id!r:.80} is not the URL's {document_id!r:.80}"
            )
        try:
            version = await target(who).asave_document(document, actor="user", expected_version=_expected(if_match))
        except DocumentInvalid as error:
            raise _conflict(error) or error from None
        response.headers["ETag"] = f'"{version}"'
        return Saved(id=document_id, version=version)

    @router.get("/documents/{document_id}/versions", response_model=list[DocumentVersion])
    async def versions(document_id: str, who: Caller = read) -> list[DocumentVersion]:
        found = await target(who).adocument_versions(document_id)
        if not found:
            await target(who).adocument(document_id)  # raises the 404
        return found

    @router.post("/documents/{document_id}/ops", response_model=PatchResult)
    async def patch(
        document_id: str,
        body: PatchRequest,
        response: Response,
        who: Caller = write,
        if_match: Annotated[str | None, Header()] = None,
    ) -> PatchResult:
        """Apply patch operations; 412 when ``If-Match`` is not the latest version. ``actor="user"`` needs admin."""
        if body.actor == "user" and who.scope != "admin":
            raise ApiError(403, "auth.scope", "only an admin token may patch as actor 'user'")
        result = await target(who).apatch_document(
            document_id, body.ops, actor=body.actor, expected_version=_expected(if_match)
        )
        if result.skipped and all(s.code == "version_conflict" for s in result.skipped) and not result.applied:
            raise ApiError(
                412,
                "document.version_conflict",
                f"document '{document_id}' is at version {result.version}; read it again and resend the ops",
                {"version": result.version},
            )
        response.headers["ETag"] = f'"{result.version}"'
        return result

    @router.post("/documents/{document_id}/runs", response_model=Run, status_code=201)
    async def start(
        document_id: str,
        body: StartDocumentRun,
        who: Caller = write,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> Run:
        """Start a run of the latest (or the given) stored version, pinned to it."""
        engine = target(who)
        workflow = engine.compile_document(await engine.adocument(document_id, body.version))
        handle = await engine.astart(
            workflow, body.input, idempotency_key=idempotency_key, priority=body.priority, metadata=body.metadata
        )
        return await handle._ainfo_as_started()

    return router
