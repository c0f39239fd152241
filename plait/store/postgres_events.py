"""The event log and the events sent to runs, on PostgreSQL.

A run's events are written in the statement of the change they describe; the
feed's cursor is (transaction id, event id), so a reader never skips an event
a transaction still in flight will commit (see ``read_events``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from plait.store.base import (
    TERMINAL_STATUSES,
    Decision,
    EventRow,
    Lease,
    NewEvent,
    is_decision_open,
)
from plait.store.postgres_connection import Cursor, PostgresConnection
from plait.store.postgres_statements import EventsShape, events_insert

EVENT_COLUMNS = "id, namespace, run_id, workflow_id, seq, type, step_id, step_key, attempt, payload, created_at"


class PostgresEvents(PostgresConnection):
    """The event part of ``PostgresStore``."""

    def __init__(self, url: str, *, schema: str | None = None, max_connections: int = 10) -> None:
        super().__init__(url, schema=schema, max_connections=max_connections)
        self.record_events = True

    def _fenced_events(self, lease: Lease, events: Sequence[NewEvent]) -> tuple[EventsShape | None, list[Any]]:
        """The shape and parameters of an ``ev`` CTE writing ``events`` behind a ``fence`` CTE (None: no events).

        Events of the fenced run alone (the usual case) take the short form: the run's last seq is
        looked up once, and each event's own parameters are only what differs between them.
        """
        if not events or not self.record_events:
            return None, []
        first = events[0]
        if all(
            e.run_id == lease.run_id and e.namespace == lease.namespace and e.workflow_id == first.workflow_id
            for e in events
        ):
            params: list[Any] = [first.workflow_id, lease.namespace, lease.run_id]
            for e in events:
                params += [e.type, e.step_id, e.step_key, e.attempt, e.payload, e.created_at]
            return (len(events), True), params
        return (len(events), False), events_insert(events, "")[1]

    def _events_cte(self, events: Sequence[NewEvent], condition: str) -> tuple[str, list[Any]]:
        """``, ev AS (INSERT ...)`` for a WITH clause, and its parameters ("" when there is nothing to log)."""
        if not events or not self.record_events:
            return "", []
        query, params = events_insert(events, condition)
        return f", ev AS ({query})", params

    async def _insert_events(self, cursor: Cursor, events: Sequence[NewEvent]) -> None:
        if events and self.record_events:
            query, params = events_insert(events, "")
            await cursor.execute(query, params)

    async def read_run_events(self, namespace: str, run_id: str, after_seq: int, limit: int) -> list[EventRow]:
        rows = await self._read(
            f"SELECT {EVENT_COLUMNS} FROM plait_events WHERE namespace = %s AND run_id = %s AND seq > %s "
            "ORDER BY seq LIMIT %s",
            (namespace, run_id, after_seq, limit),
        )
        return [EventRow(*row) for row in rows]

    async def events_head(self, namespace: str) -> str | None:
        rows = await self._read(
            "SELECT txid::text, id FROM plait_events WHERE namespace = %s "
            "AND txid < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY txid DESC, id DESC LIMIT 1",
            (namespace,),
        )
        return f"{rows[0][0]}:{rows[0][1]}" if rows else None

    async def read_events(self, namespace: str, cursor: str | None, limit: int) -> tuple[list[EventRow], str | None]:
        # Ids are handed out at insert, not at commit: order by transaction id and stop before the oldest
        # transaction still running, so an event committing later can never land behind the cursor.
        txid, last_id = cursor.split(":") if cursor else ("0", "0")
        rows = await self._read(
            f"SELECT {EVENT_COLUMNS}, txid::text FROM plait_events WHERE namespace = %s "
            "AND (txid, id) > (%s::xid8, %s) AND txid < pg_snapshot_xmin(pg_current_snapshot()) "
            "ORDER BY txid, id LIMIT %s",
            (namespace, txid, int(last_id), limit),
        )
        events = [EventRow(*row[:-1]) for row in rows]
        return events, (f"{rows[-1][-1]}:{rows[-1][0]}" if rows else cursor)

    async def peek_event(self, namespace: str, run_id: str, name: str) -> str | None:
        rows = await self._read(
            "SELECT payload FROM plait_inbox WHERE namespace = %s AND run_id = %s AND name = %s "
            "AND consumed_by IS NULL ORDER BY id DESC LIMIT 1",
            (namespace, run_id, name),
        )
        return str(rows[0][0]) if rows else None

    async def send_event(
        self,
        namespace: str,
        run_id: str,
        name: str,
        payload: str,
        event_id: str | None,
        now: float,
        wakes: str,
        decision: Decision | None = None,
    ) -> tuple[str | None, bool]:
        async def send(cursor: Cursor) -> tuple[str | None, bool]:
            # Locking the run serializes this with a park of the same run, and with another
            # decision on it: one of them sees the other.
            await cursor.execute(
                "SELECT status, workflow_id, wait_info FROM plait_runs WHERE id = %s AND namespace = %s FOR UPDATE",
                (run_id, namespace),
            )
            found = await cursor.fetchone()
            if found is None:
                return None, False
            repeated = False
            if event_id is not None:
                await cursor.execute(
                    "SELECT 1 FROM plait_inbox WHERE namespace = %s AND run_id = %s AND event_id = %s",
                    (namespace, run_id, event_id),
                )
                repeated = await cursor.fetchone() is not None
            if repeated or found[0] in TERMINAL_STATUSES:
                return ("duplicate" if repeated else str(found[0])), False
            if decision is not None:
                await cursor.execute(
                    "SELECT count(*), count(*) - count(consumed_by) FROM plait_inbox "
                    "WHERE namespace = %s AND run_id = %s AND name = %s",
                    (namespace, run_id, name),
                )
                taken = await cursor.fetchone()
                assert taken is not None
                if not is_decision_open(decision, found[0], found[2], wakes, taken[1] > 0, taken[0] > 0):
                    return "decided", False
            await cursor.execute(
                "INSERT INTO plait_inbox (namespace, run_id, name, event_id, payload, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (namespace, run_id, name, event_id, payload, now),
            )
            inserted = cursor.rowcount == 1
            if inserted:
                received = json.dumps({"name": name, "event_id": event_id})
                await self._insert_events(
                    cursor, [NewEvent(namespace, run_id, found[1], "event.received", now, received)]
                )
            if inserted and found[0] == wakes:
                await cursor.execute(
                    "UPDATE plait_runs SET status = 'waiting', ready_at = %s, updated_at = %s "
                    "WHERE namespace = %s AND id = %s",
                    (now, now, namespace, run_id),
                )
                await self._notify(cursor, namespace)
            return str(found[0]), inserted

        return await self._write(send)
