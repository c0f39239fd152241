"""Storage backends behind one ``Store`` protocol; ``open_store`` picks one from a URL."""

from __future__ import annotations

from plait.errors import StoreUnavailable
from plait.store.base import Store
from plait.store.sqlite import Durability, SQLiteStore


def open_store(url: str, *, durability: Durability = "full") -> Store:
    """The store for ``url``: ``sqlite:///relative.db``, ``sqlite:////abs/path.db``."""
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        path = path[1:] if path.startswith("/") else path
        return SQLiteStore(path or "plait.db", durability=durability)
    if url.startswith(("postgresql://", "postgres://")):
        raise StoreUnavailable("PostgreSQL support is not available in this version of plait yet; use a sqlite:/// URL")
    raise StoreUnavailable(f"unsupported database URL {url!r}: use sqlite:///path/to/file.db")


__all__ = ["SQLiteStore", "Store", "open_store"]
