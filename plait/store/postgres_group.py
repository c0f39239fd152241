"""Group commit of fenced run writes on PostgreSQL: the writes of many runs, one transaction, one round trip.

A write goes at once on a free pooled connection. Writes made while every
write connection is busy (a wave of timers due together, ending) wait and go
out together when one frees: one pipeline holding ``BEGIN``, each run's fenced
statement, ``COMMIT``. That is one connection, one network round trip and one
WAL flush for all of them, instead of one each.

Each statement is still fenced by its own run's lease, and one run's outcome
never decides another's:

- a fence that fails writes nothing and returns no row, so the others commit;
  the run is then written again on its own, whose empty answer is the one its
  caller sees (and explains as a lost lease);
- in the batch the fence skips a run whose row another transaction holds
  locked (``SKIP LOCKED``) instead of waiting for it, so the batch never waits
  on a row lock while holding others, and cannot deadlock with a heartbeat or
  a cancel that locks several runs in another order; a skipped run is written
  again on its own, waiting as a single write does;
- a statement that raises rolls the whole batch back: every write of the batch
  is then made again on its own, so only the one that fails again fails.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from plait.errors import StoreUnavailable

Rows = list[tuple[Any, ...]]


@dataclass
class _Write:
    query: str
    params: tuple[Any, ...]
    future: asyncio.Future[Rows] = field(repr=False)


@functools.lru_cache(maxsize=512)
def _skipping(query: str, fence: str) -> str:
    """``query`` with its lease fence made to skip a row locked elsewhere rather than wait for it."""
    assert fence.endswith("FOR UPDATE") and fence in query, "a grouped write must hold exactly the lease fence"
    return query.replace(fence, fence + " SKIP LOCKED", 1)


class GroupCommit:
    """Queues fenced writes and sends each group of them as one transaction.

    ``connection`` lends a connection in autocommit; ``alone`` makes one write on its own (its own
    transaction, its fence waiting for the row); ``slots`` bounds how many groups (or lone writes)
    are in flight at once, so a claim or a read always finds a pooled connection free.
    """

    def __init__(
        self,
        connection: Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]],
        alone: Callable[[str, tuple[Any, ...]], Awaitable[Rows]],
        slots: asyncio.Semaphore,
        fence: str,
    ) -> None:
        self._connection = connection
        self._alone = alone
        self._slots = slots
        self._fence = fence
        self._queue: list[_Write] = []
        # A flush is waiting for a slot (or for the loop's next turn): new writes join its group.
        self._flush_pending = False
        self._flushes: set[asyncio.Task[None]] = set()

    async def write(self, query: str, params: tuple[Any, ...]) -> Rows:
        """The rows of the fenced statement once committed ([] when its fence refused it)."""
        if not self._queue and not self._slots.locked():
            # A connection is free: the write goes at once, on its own, in parallel with the others.
            # Writes wait to go together only when every write connection is busy: a group's
            # statements run one after another in one server process, which costs a burst of
            # independent writes (steps of many runs, a fan-out) more than it saves.
            async with self._slots:
                return await self._alone(query, params)
        future: asyncio.Future[Rows] = asyncio.get_running_loop().create_future()
        self._queue.append(_Write(query, params, future))
        if not self._flush_pending:
            self._flush_pending = True
            # The flush waits for a free connection: writes queued meanwhile join its group.
            flush = asyncio.ensure_future(self._flush())
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        return await future

    async def _flush(self) -> None:
        async with self._slots:
            self._flush_pending = False
            # A caller cancelled meanwhile (its run was stopped) is not written: nothing of it was sent.
            group = [w for w in self._queue if not w.future.done()]
            self._queue = []
            try:
                if len(group) == 1:
                    await self._write_alone(group[0])
                elif group:
                    await self._write_group(group)
            except BaseException as exc:  # a cancelled flush must still answer every caller
                for write in group:
                    if not write.future.done():
                        write.future.set_exception(exc)
                raise

    async def _write_alone(self, write: _Write) -> None:
        try:
            rows = await self._alone(write.query, write.params)
        except Exception as exc:  # noqa: BLE001 - handed to the caller of this write
            if not write.future.done():
                write.future.set_exception(exc)
            return
        if not write.future.done():
            write.future.set_result(rows)

    async def _write_group(self, group: list[_Write]) -> None:
        try:
            cursors: list[psycopg.AsyncCursor[Any]] = []
            async with self._connection() as conn, _pipelined_transaction(conn):
                for write in group:
                    cursor = conn.cursor()
                    cursors.append(cursor)
                    await cursor.execute(_skipping(write.query, self._fence), write.params)
            outcomes = [await cursor.fetchall() for cursor in cursors]
        except (psycopg.Error, PoolTimeout) as exc:
            if isinstance(exc, PoolTimeout) or (isinstance(exc, psycopg.OperationalError) and _lost_connection(exc)):
                failure = StoreUnavailable(f"PostgreSQL failed: {exc}")
                failure.__cause__ = exc
                for write in group:
                    if not write.future.done():
                        write.future.set_exception(failure)
                return
            # One statement raised and the group rolled back: each write goes again on its own.
            for write in group:
                await self._write_alone(write)
            return
        again = []
        for write, rows in zip(group, outcomes, strict=True):
            if not rows:  # fenced out, or skipped as locked elsewhere: on its own, it waits for the row
                again.append(write)
            elif not write.future.done():
                write.future.set_result(rows)
        for write in again:
            await self._write_alone(write)


@asynccontextmanager
async def _pipelined_transaction(conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[None]:
    """``BEGIN``, the statements sent inside, ``COMMIT``: one pipeline, left once the server answered all."""
    async with conn.pipeline(), conn.transaction():
        yield


def _lost_connection(exc: psycopg.OperationalError) -> bool:
    """Whether the error lost the connection (the server went away), not just failed a statement."""
    return exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P"))
