"""The event log and the events sent to runs, on SQLite.

Events are written in the transaction of the change they describe (``_insert_events``,
called by the run writes); ids are handed out in commit order, so an id is a feed cursor.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from plait.store.base import TERMINAL_STATUSES, Decision, EventRow, NewEvent, event_values, is_decision_open
from plait.store.sqlite_connection import Durability, SQLiteConnection

EVENT_COLUMNS = "id, namespace, run_id, workflow_id, seq, type, step_id, step_key, attempt, payload, created_at"
# seq is the run's next number: every writer of a run's events holds the write lock, so it is gap-free.
EVENT_INSERT = (
    "INSERT INTO plait_events (namespace, run_id, workflow_id, seq, type, step_id, step_key, attempt, payload, "
    "created_at) VALUES (?, ?, ?, "
    "(SELECT coalesce(max(seq), 0) + 1 FROM plait_events WHERE namespace = ? AND run_id = ?), "
    "?, ?, ?, ?, ?, ?)"
)


class SQLiteEvents(SQLiteConnection):
    """The event part of ``SQLiteStore``."""

    def __init__(self, path: str, *, durability: Durability = "full", lock_timeout: float = 30.0) -> None:
        super().__init__(path, durability=durability, lock_timeout=lock_timeout)
        self.record_events = True

    def _insert_events(self, conn: sqlite3.Connection, events: Sequence[NewEvent]) -> None:
        if self.record_events and events:
            conn.executemany(EVENT_INSERT, [event_values(e) for e in events])

    async def read_run_events(self, namespace: str, run_id: str, after_seq: int, limit: int) -> list[EventRow]:
        rows = self._read(
            f"SELECT {EVENT_COLUMNS} FROM plait_events WHERE namespace = ? AND run_id = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (namespace, run_id, after_seq, limit),
        )
        return [EventRow(*row) for row in rows]

    async def events_head(self, namespace: str) -> str | None:
        rows = self._read("SELECT max(id) FROM plait_events WHERE namespace = ?", (namespace,))
        return None if rows[0][0] is None else str(rows[0][0])

    async def read_events(self, namespace: str, cursor: str | None, limit: int) -> tuple[list[EventRow], str | None]:
        # One writer at a time: ids are handed out in commit order, so the id is a safe cursor.
        after = int(cursor) if cursor else 0
        rows = self._read(
            f"SELECT {EVENT_COLUMNS} FROM plait_events WHERE namespace = ? AND id > ? ORDER BY id LIMIT ?",
            (namespace, after, limit),
        )
        events = [EventRow(*row) for row in rows]
        return events, str(events[-1].id) if events else cursor

    async def peek_event(self, namespace: str, run_id: str, name: str) -> str | None:
        rows = self._read(
            "SELECT payload FROM plait_inbox WHERE namespace = ? AND run_id = ? AND name = ? AND consumed_by IS NULL "
            "ORDER BY id DESC LIMIT 1",
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
        def send(conn: sqlite3.Connection) -> tuple[str | None, bool]:
            row = conn.execute(
                "SELECT status, workflow_id, wait_info FROM plait_runs WHERE id = ? AND namespace = ?",
                (run_id, namespace),
            )
            found = row.fetchone()
            if found is None:
                return None, False
            repeated = (
                event_id is not None
                and conn.execute(
                    "SELECT 1 FROM plait_inbox WHERE namespace = ? AND run_id = ? AND event_id = ?",
                    (namespace, run_id, event_id),
                ).fetchone()
            )
            if repeated or found[0] in TERMINAL_STATUSES:
                return ("duplicate" if repeated else str(found[0])), False
            if decision is not None:
                taken = conn.execute(
                    "SELECT count(*), count(*) - count(consumed_by) FROM plait_inbox "
                    "WHERE namespace = ? AND run_id = ? AND name = ?",
                    (namespace, run_id, name),
                ).fetchone()
                if not is_decision_open(decision, found[0], found[2], wakes, taken[1] > 0, taken[0] > 0):
                    return "decided", False
            cursor = conn.execute(
                "INSERT INTO plait_inbox (namespace, run_id, name, event_id, payload, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (namespace, run_id, name, event_id, payload, now),
            )
            if cursor.rowcount:
                received = {"name": name, "event_id": event_id}
                self._insert_events(
                    conn, [NewEvent(namespace, run_id, found[1], "event.received", now, json.dumps(received))]
                )
            if cursor.rowcount and found[0] == wakes:
                conn.execute(
                    "UPDATE plait_runs SET status = 'waiting', ready_at = ?, updated_at = ? "
                    "WHERE namespace = ? AND id = ?",
                    (now, now, namespace, run_id),
                )
            return str(found[0]), cursor.rowcount == 1

        return await self._write(send)
