"""A PostgreSQL store's connections: the pool, one pinned connection for single statements, LISTEN/NOTIFY.

Fenced writes of running runs go through ``_fenced``: those of many runs made
together share one transaction (``postgres_group``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, nullcontext
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from plait.errors import StoreUnavailable

try:
    import psycopg
    import psycopg.errors
    from psycopg import sql
    from psycopg.pq import ExecStatus
    from psycopg_pool import AsyncConnectionPool, PoolTimeout
except ImportError as missing:  # pragma: no cover - exercised only without the extra installed
    raise StoreUnavailable("PostgreSQL support needs psycopg: pip install 'plait[postgres]'") from missing

from plait.store.postgres_group import GroupCommit
from plait.store.postgres_statements import FENCE

T = TypeVar("T")
TUPLES_OK = ExecStatus.TUPLES_OK
Cursor = psycopg.AsyncCursor[Any]

log = logging.getLogger("plait.store.postgres")

CHANNEL = "plait_wakeup"
# How long the first connection may take before an engine reports the server unreachable.
CONNECT_TIMEOUT_SECONDS = 5
# How long one pooled connection stays pinned for single statements before it goes back to the pool.
PIN_SECONDS = 60.0
# Pooled connections a wave of fenced run writes (steps, ends) leaves to everything else: a claim or a
# read queued behind dozens of them would wait for all of them (the pool serves in turn).
RESERVED_CONNECTIONS = 2
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def split_schema(url: str, schema: str | None) -> tuple[str, str]:
    """The connection URL without plait's own ``?schema=`` parameter, and the schema to use."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    from_url = next((value for key, value in query if key == "schema"), None)
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    chosen = schema or from_url or "public"
    if _SCHEMA_NAME.fullmatch(chosen) is None:
        raise StoreUnavailable(f"invalid PostgreSQL schema name {chosen!r}: use lowercase letters, digits and '_'")
    return urlunsplit(parts._replace(query=rest)), chosen


class PostgresConnection:
    """The connections of a ``PostgresStore``; plait's tables live in ``schema`` (default ``public``)."""

    def __init__(self, url: str, *, schema: str | None = None, max_connections: int = 10) -> None:
        self.url, self.schema = split_schema(url, schema)
        self._pool = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=max_connections,
            open=False,
            kwargs={"autocommit": True},
            configure=self._configure,
            timeout=30.0,
        )
        # The connection single statements go through while it is free (see ``_connection``).
        self._pinned: psycopg.AsyncConnection[Any] | None = None
        self._pinned_busy = False
        self._pinned_at = 0.0
        self._listener: asyncio.Task[None] | None = None
        self._probed = False
        self.record_events = True
        self._wakeup: Callable[[], None] | None = None
        # At most all but ``RESERVED_CONNECTIONS`` pooled connections make fenced run writes at once, so a
        # claim or a read is never queued behind a whole wave of them.
        self._group = GroupCommit(
            self._connection,
            self._fenced_alone,
            asyncio.Semaphore(max(1, max_connections - RESERVED_CONNECTIONS)),
            FENCE,
        )

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))

    async def _ensure_open(self) -> None:
        if self._pool.closed and not self._probed:
            await self._probe()
        try:
            await self._pool.open(wait=True, timeout=30.0)
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL at {self._where()}: {exc}") from exc

    async def _probe(self) -> None:
        """One direct connection first, so an unreachable server fails in seconds with its own reason.

        The pool would retry for its whole timeout and log every attempt instead.
        """
        try:
            conn = await psycopg.AsyncConnection.connect(self.url, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {self._where()}: {reason}. Check that the server runs and "
                "the URL (PLAIT_DATABASE_URL or --db) names it"
            ) from None
        await conn.close()
        self._probed = True

    def _where(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or "localhost"
        return f"{host}:{parts.port or 5432}{parts.path or ''}"

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        pinned, self._pinned = self._pinned, None
        if pinned is not None and not self._pinned_busy:
            await self._pool.putconn(pinned)
        await self._pool.close()

    @asynccontextmanager
    async def _cursor(self, *, write: bool, pipeline: bool = False) -> AsyncIterator[Cursor]:
        """A cursor in a transaction (``write``) or in autocommit; driver errors become StoreUnavailable.

        ``pipeline``: statements go out without waiting for the server until a result is fetched, so
        ``BEGIN`` rides with the first statement, and what follows the last fetch with ``COMMIT``.
        """
        try:
            async with self._pool.connection() as conn:
                if write:
                    piped = conn.pipeline() if pipeline else nullcontext()
                    async with piped, conn.transaction(), conn.cursor() as cursor:
                        yield cursor
                else:
                    async with conn.cursor() as cursor:
                        yield cursor
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreUnavailable(f"PostgreSQL failed: {exc}") from exc

    async def _write(self, work: Callable[[Cursor], Awaitable[T]], *, pipeline: bool = False) -> T:
        async with self._cursor(write=True, pipeline=pipeline) as cursor:
            return await work(cursor)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection for one autocommit statement: the pinned one while it is free, else one from the pool.

        The pool hands its idle connections round in turn; statements made one after another (a run's
        steps) all going through one connection, and so one server process, keep its prepared statements
        and caches warm.
        Any error hands the pinned connection back to the pool, which replaces it if it is broken.
        """
        if self._pinned_busy or self._pool.closed:
            async with self._pool.connection() as conn:
                yield conn
            return
        self._pinned_busy = True
        try:
            if self._pinned is None:
                self._pinned, self._pinned_at = await self._pool.getconn(), time.monotonic()
            conn = self._pinned
            try:
                yield conn
            except BaseException:
                if self._pinned is conn:
                    self._pinned = None
                await self._pool.putconn(conn)
                raise
            # Now and then (and when the store closed meanwhile) it goes back, so the pool's
            # max_lifetime and replacement of connections apply to it as to the others.
            if self._pinned is not conn or time.monotonic() - self._pinned_at > PIN_SECONDS:
                if self._pinned is conn:
                    self._pinned = None
                await self._pool.putconn(conn)
        finally:
            self._pinned_busy = False

    async def _read(self, query: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement in autocommit, so its own transaction: its rows ([] when it returns none)."""
        try:
            async with self._connection() as conn, conn.cursor() as cursor:
                await cursor.execute(query, params)
                # The result's status, not ``description``: that would describe every column first.
                result = cursor.pgresult
                return await cursor.fetchall() if result is not None and result.status == TUPLES_OK else []
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreUnavailable(f"PostgreSQL failed: {exc}") from exc

    async def _notify(self, cursor: Cursor, namespace: str) -> None:
        """Wake idle workers of this schema and namespace once the transaction commits."""
        await cursor.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{self.schema}/{namespace}"))

    def set_concurrency_hint(self, active_runs: int) -> None:
        """Concurrent runs commit on their own pooled connections here: nothing to adjust."""

    def on_wakeup(self, callback: Callable[[], None]) -> None:
        self._wakeup = callback
        if self._listener is None:
            self._listener = asyncio.ensure_future(self._listen())

    async def _listen(self) -> None:
        """Call the wake-up callback on every NOTIFY for this schema; reconnect after outages."""
        mine = f"{self.schema}/"
        pause = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                    pause = 0.5
                    if self._wakeup:
                        self._wakeup()  # anything missed while disconnected
                    async for note in conn.notifies():
                        if note.payload.startswith(mine) and self._wakeup:
                            self._wakeup()
            except asyncio.CancelledError:
                raise
            except psycopg.Error as exc:
                log.warning("plait: PostgreSQL listener lost its connection (%s); retrying in %.1fs", exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10.0)

    async def _fenced(self, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Run a fenced statement of one run; its rows once committed ([] when the fence refused it).

        Those of several runs made at once commit together (see ``postgres_group``).
        """
        return await self._group.write(query, params)

    async def _fenced_alone(self, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Run a fenced statement that writes a run's events; once more if their seq was taken meanwhile.

        The statement's snapshot is taken before its fence waits for the run's row lock: when the lock's
        holder (``send_event``, say) added an event to the run meanwhile, the events numbered here from
        that snapshot collide with it. Run again, the statement starts after the holder committed.
        """
        try:
            return await self._read(query, params)
        except StoreUnavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, psycopg.errors.UniqueViolation) and cause.diag.constraint_name == "plait_events_run":
                return await self._read(query, params)
            raise
