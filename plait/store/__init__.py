"""Storage backends behind one ``Store`` protocol; ``open_store`` picks one from a URL."""

from __future__ import annotations

from plait.errors import StoreUnavailable
from plait.store.base import Store
from plait.store.sqlite import SQLiteStore
from plait.store.sqlite_connection import Durability


def open_store(url: str, *, durability: Durability = "full", schema: str | None = None) -> Store:
    """The store for ``url``.

    ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, or
    ``postgresql://user@host/db[?schema=name]`` (needs ``pip install 'plait[postgres]'``;
    ``schema`` puts plait's tables in their own PostgreSQL schema).
    """
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        path = path[1:] if path.startswith("/") else path
        return SQLiteStore(path or "plait.db", durability=durability)
    if url.startswith(("postgresql://", "postgres://")):
        from plait.store.postgres import PostgresStore  # loaded only when used: psycopg is an extra

        return PostgresStore(url, schema=schema)
    raise StoreUnavailable(
        f"unsupported database URL {url!r}: use sqlite:///path/to/file.db or postgresql://user@host/database"
    )


__all__ = ["SQLiteStore", "Store", "open_store"]
