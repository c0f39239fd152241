"""Blob stores: where artifacts too large for the database live.

A local directory (``file:///var/lib/plait/blobs``, the default next to a
SQLite file) or, when ``fsspec`` is installed, any URL it knows
(``s3://bucket/prefix``). Blobs are written whole before the step that made
them commits, so a committed artifact row always finds its blob; a blob
whose step never committed is an orphan that ``engine.prune`` removes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from plait.errors import ArtifactNotFound, StoreUnavailable


class BlobStore(Protocol):
    """Named byte strings; names are ``/``-separated and never start with ``/``."""

    url: str

    def write(self, name: str, data: bytes) -> None:
        """Store ``data`` durably under ``name`` (replacing any blob of that name)."""
        ...

    def read(self, name: str) -> bytes:
        """The blob's bytes; raises ArtifactNotFound when it is gone."""
        ...

    def delete(self, name: str) -> None:
        """Remove the blob; no error when it does not exist."""
        ...

    def names(self, prefix: str) -> list[str]:
        """Every blob name under ``prefix`` (a folder like ``"default/"``)."""
        ...


class FileBlobStore:
    """Blobs as files under a local directory, written to a temporary file, fsynced, then renamed."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.url = self.root.resolve().as_uri()

    def _path(self, name: str) -> Path:
        return self.root.joinpath(*name.split("/"))

    def write(self, name: str, data: bytes) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        # The rename itself must survive a power cut before the step's commit refers to it.
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def read(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactNotFound(f"blob {name!r} is missing from {self.url}; was the directory moved?") from exc

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def names(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        if not base.is_dir():
            return []
        return [p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file()]


class FsspecBlobStore:
    """Blobs in any file system ``fsspec`` knows (``s3://``, ``gs://``, ``memory://``...)."""

    def __init__(self, url: str) -> None:
        import fsspec  # type: ignore[import-not-found,unused-ignore]  # loaded only when used: optional

        self.url = url.rstrip("/")
        self._fs: Any
        self._fs, self._root = fsspec.core.url_to_fs(self.url)

    def _path(self, name: str) -> str:
        return f"{self._root}/{name}"

    def write(self, name: str, data: bytes) -> None:
        self._fs.pipe_file(self._path(name), data)

    def read(self, name: str) -> bytes:
        try:
            data: bytes = self._fs.cat_file(self._path(name))
        except FileNotFoundError as exc:
            raise ArtifactNotFound(f"blob {name!r} is missing from {self.url}") from exc
        return data

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._fs.rm_file(self._path(name))

    def names(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/"))
        try:
            found = self._fs.find(base)
        except FileNotFoundError:
            return []
        root = self._root.rstrip("/") + "/"
        return [str(path).removeprefix("/").removeprefix(root.lstrip("/")) for path in found]


def open_blob_store(url: str | None, database_url: str) -> BlobStore | None:
    """The blob store for ``Engine(blobs=url)``; by default a directory next to a SQLite file.

    On PostgreSQL there is no default (workers on other machines could not
    read a local directory): large artifacts then need ``blobs=``.
    """
    if url is None:
        if database_url.startswith("sqlite://"):
            path = database_url.removeprefix("sqlite://")
            path = path[1:] if path.startswith("/") else path
            return FileBlobStore(f"{path or 'plait.db'}-blobs")
        return None
    if url.startswith("file://"):
        return FileBlobStore(unquote(urlparse(url).path))
    if "://" not in url:
        return FileBlobStore(url)  # a plain directory path
    if importlib.util.find_spec("fsspec") is None:
        raise StoreUnavailable(
            f"the blob store {url!r} needs fsspec (and its driver for that scheme): pip install fsspec "
            "(for s3:// also s3fs), or use a local directory: Engine(blobs='file:///path/to/blobs')"
        )
    try:
        return FsspecBlobStore(url)
    except (ImportError, ValueError) as exc:
        raise StoreUnavailable(f"cannot open the blob store {url!r}: {exc}") from exc
