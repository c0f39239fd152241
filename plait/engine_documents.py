"""Engine methods for workflow documents: connectors, stored versions, patches and runs of documents."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from plait.documents.connectors import Connector
from plait.documents.model import WorkflowDocument, short
from plait.documents.ops import Actor, PatchResult, SkippedOp, apply_ops, redacted_op, summarize
from plait.documents.problems import Problem, document_invalid
from plait.documents.registry import EnvAllowList, Registry
from plait.documents.secrets import SecretSource, use_secrets
from plait.errors import DocumentInvalid, WorkflowNotFound
from plait.store import documents as table
from plait.workflow.graph import Workflow

if TYPE_CHECKING:
    from plait.clock import Clock
    from plait.loop_thread import LoopThread
    from plait.store.base import Store
    from plait.worker import Worker


class DocumentVersion(BaseModel):
    """One stored version of a document: who made it, with which ops, and the content hash runs pin to."""

    id: str
    version: int
    hash: str
    actor: str
    ops: list[Any] | None = None
    created_at: datetime


def _version(row: table.DocumentRow) -> DocumentVersion:
    return DocumentVersion(
        id=row.id,
        version=row.version,
        hash=row.hash,
        actor=row.actor,
        ops=json.loads(row.ops) if row.ops else None,
        created_at=datetime.fromtimestamp(row.created_at, UTC),
    )


class DocumentsMixin:
    """Part of ``Engine``: the connector registry and stored, versioned workflow documents."""

    # Provided by Engine.
    _loop: LoopThread
    _store: Store
    _worker: Worker
    _latest: dict[str, Workflow[Any, Any]]
    namespace: str
    clock: Clock

    if TYPE_CHECKING:

        def register(self, *items: Any) -> None: ...

        def _lookup(self, workflow_id: str, version: str | None) -> Workflow[Any, Any] | None: ...

    def _init_documents(self, secrets: SecretSource | None, document_env: EnvAllowList | None) -> None:
        self.registry = Registry(env=document_env)
        """The connectors this engine's documents may use (``engine.register(connector)`` adds to it)."""
        use_secrets(self._worker, secrets)
        # Ids of workflows that came from documents: starting one by id reads the latest stored version.
        self._document_ids: set[str] = set()

    def _register_document_item(self, item: object) -> bool:
        """Register a connector or a document (compiled); False for anything else."""
        if isinstance(item, Connector):
            self.registry.add(item)
            return True
        if isinstance(item, WorkflowDocument):
            self.compile_document(item)
            return True
        return False

    def compile_document(self, document: WorkflowDocument | Mapping[str, Any] | str) -> Workflow[Any, Any]:
        """The document as a workflow, registered with this engine; raises DocumentInvalid."""
        workflow = self.registry.compile(document)
        if self._lookup(workflow.id, workflow.version) is None:
            self.register(workflow)
        self._document_ids.add(workflow.id)
        return self._lookup(workflow.id, workflow.version) or workflow

    # -- stored documents ------------------------------------------------------

    def save_document(
        self,
        document: WorkflowDocument | Mapping[str, Any] | str,
        *,
        actor: Actor = "user",
        expected_version: int | None = None,
    ) -> int:
        """Store ``document`` as its next version and return the version number.

        The document must compile (DocumentInvalid lists every problem otherwise).
        With ``expected_version`` (0 for a new document) it is stored only if that
        is still the latest version; else DocumentInvalid with a ``version_conflict``
        problem.
        """
        return self._loop.run(self._save_document(document, actor, expected_version))

    async def asave_document(
        self,
        document: WorkflowDocument | Mapping[str, Any] | str,
        *,
        actor: Actor = "user",
        expected_version: int | None = None,
    ) -> int:
        return await self._loop.run_async(self._save_document(document, actor, expected_version))

    async def _save_document(
        self, document: WorkflowDocument | Mapping[str, Any] | str, actor: Actor, expected: int | None
    ) -> int:
        doc = WorkflowDocument.parse(document)
        self.compile_document(doc)
        while True:
            latest = await table.get(self._store, self.namespace, doc.id)
            after = latest.version if latest else 0
            if expected is not None and expected != after:
                raise version_conflict(doc.id, after, expected)
            version = await self._insert(doc, after, None, actor)
            if version is not None:
                return version

    async def _insert(self, doc: WorkflowDocument, after: int, ops: Sequence[Any] | None, actor: str) -> int | None:
        row = table.DocumentRow(
            namespace=self.namespace,
            id=doc.id,
            version=after + 1,
            hash=doc.content_hash(),
            body=json.dumps(doc.to_data(), separators=(",", ":")),
            ops=json.dumps(list(ops)) if ops is not None else None,
            actor=actor,
            created_at=self.clock.now().timestamp(),
        )
        return await table.insert_version(self._store, self.namespace, doc.id, after, row)

    def document(self, document_id: str, version: int | None = None) -> WorkflowDocument:
        """A stored document (its latest version unless ``version`` is given); raises WorkflowNotFound."""
        return self._loop.run(self._document(document_id, version))

    async def adocument(self, document_id: str, version: int | None = None) -> WorkflowDocument:
        return await self._loop.run_async(self._document(document_id, version))

    async def _document(self, document_id: str, version: int | None) -> WorkflowDocument:
        row = await self._document_row(document_id, version)
        return WorkflowDocument.model_validate_json(row.body)

    async def _document_row(self, document_id: str, version: int | None) -> table.DocumentRow:
        row = await table.get(self._store, self.namespace, document_id, version)
        if row is None:
            which = f" version {version}" if version is not None else ""
            raise WorkflowNotFound(
                f"no stored document {short(document_id)}{which} in namespace '{self.namespace}'; "
                "save one with engine.save_document(doc)"
            )
        return row

    def document_version(self, document_id: str) -> int:
        """The latest stored version number of a document; raises WorkflowNotFound."""
        return self._loop.run(self._document_row(document_id, None)).version

    def document_versions(self, document_id: str) -> list[DocumentVersion]:
        """Every stored version of a document, oldest first, with the ops that made each."""
        return self._loop.run(self._document_versions(document_id))

    async def adocument_versions(self, document_id: str) -> list[DocumentVersion]:
        return await self._loop.run_async(self._document_versions(document_id))

    async def _document_versions(self, document_id: str) -> list[DocumentVersion]:
        return [_version(row) for row in await table.versions(self._store, self.namespace, document_id)]

    def documents(self) -> list[DocumentVersion]:
        """The latest version of every stored document."""
        return self._loop.run(self._documents())

    async def adocuments(self) -> list[DocumentVersion]:
        return await self._loop.run_async(self._documents())

    async def _documents(self) -> list[DocumentVersion]:
        return [_version(row) for row in await table.latest_of_each(self._store, self.namespace)]

    def patch_document(
        self, document_id: str, ops: Sequence[Any], *, actor: Actor = "llm", expected_version: int | None = None
    ) -> PatchResult:
        """Apply ops to the latest stored version; stores a new version when anything applied.

        With ``expected_version`` (the version the caller read), a document
        changed since is not patched: every op is skipped with ``version_conflict``.
        Two concurrent patches of the same version: one wins, the other gets
        ``version_conflict`` and nothing is lost. ``result.version`` is the
        stored version number after the call.
        """
        return self._loop.run(self._patch_document(document_id, ops, actor, expected_version))

    async def apatch_document(
        self, document_id: str, ops: Sequence[Any], *, actor: Actor = "llm", expected_version: int | None = None
    ) -> PatchResult:
        return await self._loop.run_async(self._patch_document(document_id, ops, actor, expected_version))

    async def _patch_document(
        self, document_id: str, ops: Sequence[Any], actor: Actor, expected_version: int | None
    ) -> PatchResult:
        row = await self._document_row(document_id, None)
        current = WorkflowDocument.model_validate_json(row.body)
        if expected_version is not None and expected_version != row.version:
            return _conflict(current, ops, self.registry, row.version, expected_version)
        result = apply_ops(current, ops, self.registry, actor=actor)
        if not result.applied:
            return result.model_copy(update={"version": row.version})
        if not result.problems:
            self.compile_document(result.document)
        # Applied ops never hold a hidden param (those are skipped), so they are stored as sent.
        applied_ops = [ops[i] for i in result.applied]
        version = await self._insert(result.document, row.version, applied_ops, actor)
        if version is None:  # another patch stored a version since we read ours
            latest = await self._document_row(document_id, None)
            return _conflict(current, ops, self.registry, latest.version, row.version)
        return result.model_copy(update={"version": version})

    def load_documents(self) -> int:
        """Register every stored version of every document (for a worker process); returns how many.

        Runs are pinned to the version they started on, so a worker must know
        the old versions too. Versions that no longer compile here (a connector
        is gone) are left out.
        """
        return self._loop.run(self._load_documents())

    async def _load_documents(self) -> int:
        count = 0
        for row in await table.every_version(self._store, self.namespace):
            try:
                self.compile_document(row.body)
            except Exception:  # noqa: BLE001 - an old version that no longer compiles cannot run here.
                continue
            count += 1
        return count

    async def _stored_document_workflow(self, workflow: object) -> Any:
        """What ``engine.start`` runs for ``workflow``: a document, or a stored document's latest version."""
        if isinstance(workflow, WorkflowDocument):
            return self.compile_document(workflow)
        if isinstance(workflow, str):
            row = await table.get(self._store, self.namespace, workflow)
            if row is not None:
                # Another process may have stored a newer version: run the latest one.
                known = self._lookup(workflow, row.hash)
                return known if known is not None else self.compile_document(row.body)
        return workflow

    def _is_document_target(self, workflow: object) -> bool:
        """Whether ``engine.start(workflow, ...)`` must look at documents (never for a registered id)."""
        if isinstance(workflow, str):
            return workflow not in self._latest or workflow in self._document_ids
        return isinstance(workflow, WorkflowDocument)


def version_conflict(document_id: str, latest: int, expected: int) -> DocumentInvalid:
    problem = Problem(
        "", "version_conflict", f"the document is at version {latest}, not {expected}", "read it again and retry"
    )
    return document_invalid([problem], document_id)


def _conflict(
    current: WorkflowDocument, ops: Sequence[Any], registry: Registry, latest: int, expected: int
) -> PatchResult:
    blocks = {b.id: {"type": b.type} for b in current.blocks}
    skipped = [
        SkippedOp(
            index=i,
            op=redacted_op(op, registry, blocks),
            code="version_conflict",
            reason=f"the document is at version {latest}, not {expected}",
            hint="read the current document and send ops against it",
        )
        for i, op in enumerate(ops)
    ]
    return PatchResult(
        document=current,
        skipped=skipped,
        summary=summarize(list(ops), [], skipped, []),
        version=latest,
    )
