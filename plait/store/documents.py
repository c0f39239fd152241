"""Stored workflow documents: every version of every document, in portable SQL over any store."""

from __future__ import annotations

from dataclasses import dataclass

from plait.store.base import Store

COLUMNS = "namespace, id, version, hash, body, ops, actor, created_at"


@dataclass(frozen=True)
class DocumentRow:
    namespace: str
    id: str
    version: int
    hash: str
    body: str
    ops: str | None
    actor: str
    created_at: float


async def insert_version(store: Store, namespace: str, document_id: str, after: int, row: DocumentRow) -> int | None:
    """Store ``row`` as version ``after + 1`` if ``after`` is still the latest; None when another writer won.

    One statement: the version check and the insert cannot interleave with a
    concurrent writer (two writers of the same next version collide on the key).
    """
    rows = await store.sql(
        f"INSERT INTO plait_documents ({COLUMNS}) SELECT ?, ?, ?, ?, ?, ?, ?, ? "
        "WHERE COALESCE((SELECT max(version) FROM plait_documents WHERE namespace = ? AND id = ?), 0) = ? "
        "ON CONFLICT DO NOTHING RETURNING version",
        (
            namespace, document_id, after + 1, row.hash, row.body, row.ops, row.actor, row.created_at,
            namespace, document_id, after,
        ),
        write=True,
    )  # fmt: skip
    return int(rows[0][0]) if rows else None


async def get(store: Store, namespace: str, document_id: str, version: int | None = None) -> DocumentRow | None:
    """One version (the latest when ``version`` is None)."""
    if version is None:
        rows = await store.sql(
            f"SELECT {COLUMNS} FROM plait_documents WHERE namespace = ? AND id = ? ORDER BY version DESC LIMIT 1",
            (namespace, document_id),
        )
    else:
        rows = await store.sql(
            f"SELECT {COLUMNS} FROM plait_documents WHERE namespace = ? AND id = ? AND version = ?",
            (namespace, document_id, version),
        )
    return DocumentRow(*rows[0]) if rows else None


async def by_hash(store: Store, namespace: str, document_id: str, content_hash: str) -> DocumentRow | None:
    rows = await store.sql(
        f"SELECT {COLUMNS} FROM plait_documents WHERE namespace = ? AND id = ? AND hash = ? "
        "ORDER BY version DESC LIMIT 1",
        (namespace, document_id, content_hash),
    )
    return DocumentRow(*rows[0]) if rows else None


async def versions(store: Store, namespace: str, document_id: str) -> list[DocumentRow]:
    """Every version of a document, oldest first."""
    rows = await store.sql(
        f"SELECT {COLUMNS} FROM plait_documents WHERE namespace = ? AND id = ? ORDER BY version",
        (namespace, document_id),
    )
    return [DocumentRow(*row) for row in rows]


async def latest_of_each(store: Store, namespace: str) -> list[DocumentRow]:
    """The latest version of every document, by id."""
    rows = await store.sql(
        f"SELECT {COLUMNS} FROM plait_documents d WHERE namespace = ? AND version = "
        "(SELECT max(version) FROM plait_documents WHERE namespace = d.namespace AND id = d.id) ORDER BY id",
        (namespace,),
    )
    return [DocumentRow(*row) for row in rows]


async def every_version(store: Store, namespace: str) -> list[DocumentRow]:
    rows = await store.sql(
        f"SELECT {COLUMNS} FROM plait_documents WHERE namespace = ? ORDER BY id, version", (namespace,)
    )
    return [DocumentRow(*row) for row in rows]
