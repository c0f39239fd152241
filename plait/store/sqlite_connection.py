"""The SQLite store's connection: write transactions, group commit, and errors as ``StoreUnavailable``.

Every driver error leaves here as ``StoreUnavailable`` with what to do. Two
hazards shape the code. SQLite rolls a transaction back by itself on some
errors (a full disk, an I/O error), so a later ROLLBACK would fail and any
further statement would run outside a transaction: the connection is asked
whether a transaction is still open before anything else runs in it. And a
database file deleted or replaced under an open connection keeps accepting
writes that nobody will ever read again, so the file's identity is checked
before each write transaction.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from plait.errors import StoreUnavailable
from plait.store.sqlite_checkpoints import BACKSTOP_PAGES, Checkpointer

T = TypeVar("T")

Durability = Literal["full", "normal"]
Work = Callable[[sqlite3.Connection], Any]

log = logging.getLogger("plait.store")


def _fail(batch: list[tuple[Work, asyncio.Future[Any]]], error: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _file_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``; None when there is no file there."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


class SQLiteConnection:
    """One connection to a SQLite file, used from a single thread (the engine's loop)."""

    def __init__(self, path: str, *, durability: Durability = "full", lock_timeout: float = 30.0) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        self._queue: list[tuple[Work, asyncio.Future[Any]]] = []
        self._flush_scheduled = False
        self._active_runs = 0
        self._retrying: set[asyncio.Future[None]] = set()
        in_memory = path == ":memory:" or path.startswith("file:")
        # Absolute, so a later chdir of the process cannot point the check at another file.
        self._checked_path = None if in_memory else os.path.abspath(path)
        self._identity: tuple[int, int] | None = None
        self._lost: StoreUnavailable | None = None
        try:
            if not in_memory:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
            self._conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit survives power loss once it returns; NORMAL may lose
            # the last commits on power loss (never on a process crash).
            self._conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._checkpoints: Checkpointer | None = None
            if self._checked_path is not None:  # a file: its WAL is checkpointed off the event loop
                self._conn.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
                self._checkpoints = Checkpointer(self._checked_path, "FULL" if durability == "full" else "NORMAL")
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(
                f"cannot open SQLite database {path!r}: {exc}; check that its folder exists, is writable and has space"
            ) from exc
        if self._checked_path is not None:
            self._identity = _file_identity(self._checked_path)

    async def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.close()
        try:
            self._conn.close()
        except sqlite3.Error as exc:  # closing cannot lose a committed write: say so and carry on
            log.warning("plait: closing SQLite database %r failed: %s", self.path, exc)

    def set_concurrency_hint(self, active_runs: int) -> None:
        self._active_runs = active_runs

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        """The StoreUnavailable that explains the driver error ``exc``."""
        text = str(exc)
        if "full" in text.lower():
            advice = "the disk is full: free space, then retry (nothing of this operation was written)"
        elif "readonly" in text.lower() or "read-only" in text.lower():
            advice = "the file is read-only: give this process write access to it and its folder"
        else:
            advice = "check the file and its disk, then retry"
        return StoreUnavailable(f"SQLite database {self.path!r} failed ({text}); {advice}")

    def _check_file(self) -> None:
        """Refuse to write when the database file was deleted or replaced since it was opened.

        The open connection would keep writing to the unlinked file: every run
        acknowledged from then on would be gone when the path is opened again.
        One stat() per write transaction, against a commit's fsync.
        """
        if self._lost is not None:
            raise self._lost
        if self._checked_path is None:
            return
        now = _file_identity(self._checked_path)
        if self._identity is None:  # created lazily by the first write
            self._identity = now
            return
        if now == self._identity:
            return
        what = "deleted" if now is None else "replaced by another file"
        self._lost = StoreUnavailable(
            f"SQLite database file {self._checked_path!r} was {what} while plait had it open; nothing more is "
            "written to it. Restore the file (from a backup if it was deleted by mistake) and restart this process"
        )
        raise self._lost

    def _begin_now(self) -> None:
        """Check the file, then BEGIN IMMEDIATE (raises sqlite3.OperationalError when busy)."""
        self._check_file()
        self._conn.execute("BEGIN IMMEDIATE")

    def _rollback(self) -> None:
        """Roll back the open transaction, if SQLite has not already done so itself."""
        if not self._conn.in_transaction:
            return
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.warning("plait: rolling back on SQLite database %r failed: %s", self.path, exc)

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in a write transaction and return its result once committed.

        Group commit: writes queued in the same turn of the event loop (steps
        of different runs finishing together) share one transaction and one
        fsync. Each runs in its own savepoint, so one that raises (a lost
        lease, say) is rolled back alone and raises to its caller.
        """
        if self._active_runs <= 1 and not self._queue and not self._flush_scheduled:
            # One run at a time: nobody to share a commit with, so commit now and skip the loop's turn.
            done = self._write_now(work)
            if done is not None:
                return done[0]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((work, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        result: T = await future
        return result

    def _write_now(self, work: Callable[[sqlite3.Connection], T]) -> tuple[T] | None:
        """Run ``work`` in its own transaction at once; None if the lock is taken (then it queues)."""
        try:
            self._begin_now()
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                return None
            raise self.unavailable(exc) from exc
        except sqlite3.Error as exc:
            raise self.unavailable(exc) from exc
        try:
            result = work(self._conn)
            self._conn.execute("COMMIT")
        except BaseException as exc:
            self._rollback()
            if isinstance(exc, sqlite3.Error):
                raise self.unavailable(exc) from exc
            raise
        if self._checkpoints is not None:
            self._checkpoints.committed()
        return (result,)

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._queue = self._queue, []
        if not batch:
            return
        try:
            self._begin_now()
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):  # another process holds the lock: keep trying without blocking the loop
                retry = asyncio.ensure_future(self._flush_later(batch))
                self._retrying.add(retry)
                retry.add_done_callback(self._retrying.discard)
                return
            _fail(batch, self.unavailable(exc))
            return
        except sqlite3.Error as exc:
            _fail(batch, self.unavailable(exc))
            return
        except StoreUnavailable as exc:
            _fail(batch, exc)
            return
        self._commit_batch(batch)

    async def _flush_later(self, batch: list[tuple[Work, asyncio.Future[Any]]]) -> None:
        try:
            await self._begin()
        except StoreUnavailable as exc:
            _fail(batch, exc)
            return
        self._commit_batch(batch)

    def _commit_batch(self, batch: list[tuple[Work, asyncio.Future[Any]]]) -> None:
        """Run every write of the batch in the open transaction, commit once, and answer each caller."""
        alone = len(batch) == 1  # a savepoint buys nothing when there is nobody to isolate from
        outcomes: list[tuple[bool, Any]] = []
        try:
            for work, _ in batch:
                outcomes.append(self._run_one(work, isolated=not alone))
                if not self._conn.in_transaction:
                    # SQLite rolled the whole transaction back (a full disk, an I/O error): the writes
                    # before this one are gone too, and the next ones would run outside any transaction.
                    failed = outcomes[-1][1]
                    raise failed if isinstance(failed, StoreUnavailable) else self.unavailable(failed)
            self._conn.execute("ROLLBACK" if alone and not outcomes[0][0] else "COMMIT")
            if self._checkpoints is not None:
                self._checkpoints.committed()
        except (sqlite3.Error, StoreUnavailable) as exc:
            self._rollback()
            failure = exc if isinstance(exc, StoreUnavailable) else self.unavailable(exc)
            outcomes = [(False, failure)] * len(batch)
        for (ok, value), (_, future) in zip(outcomes, batch, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _run_one(self, work: Work, *, isolated: bool) -> tuple[bool, Any]:
        """Run one write of a batch: (True, its result) or (False, the error for its caller)."""
        if isolated:
            self._conn.execute("SAVEPOINT plait_write")
        try:
            value = work(self._conn)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller that queued this work
            if isolated and self._conn.in_transaction:
                self._conn.execute("ROLLBACK TO plait_write")
                self._conn.execute("RELEASE plait_write")
            return False, self.unavailable(exc) if isinstance(exc, sqlite3.Error) else exc
        if isolated:
            self._conn.execute("RELEASE plait_write")
        return True, value

    async def _begin(self) -> None:
        """BEGIN IMMEDIATE, retrying while another process holds the write lock."""
        deadline = time.monotonic() + self.lock_timeout
        pause = 0.002
        while True:
            try:
                self._begin_now()
                return
            except sqlite3.OperationalError as exc:
                if _is_busy(exc) and time.monotonic() < deadline:
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 0.1)
                    continue
                raise StoreUnavailable(
                    f"SQLite database {self.path!r} stayed locked for {self.lock_timeout:g}s ({exc}); "
                    "another process holds its write lock: retry"
                ) from exc
            except sqlite3.Error as exc:
                raise self.unavailable(exc) from exc

    def _read(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self.unavailable(exc) from exc
