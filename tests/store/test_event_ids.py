"""Event ids only ever grow, so a feed cursor never skips an event: after pruning everything, and across the
migration that took AUTOINCREMENT off SQLite's event ids."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import plait
from plait.store.base import NewRun
from plait.store.sqlite import SQLiteStore
from plait.store.sqlite_schema import MIGRATIONS, _events_without_autoincrement
from plait.testing import FakeClock


@plait.step
def double(x: int) -> int:
    return x * 2


flow = plait.workflow("event_ids_flow", input=int).then(double).commit()


def test_a_new_event_comes_after_the_cursor_even_once_every_event_was_pruned(db_url: str) -> None:
    clock = FakeClock()
    with plait.Engine(db_url, clock=clock) as engine:
        engine.start(flow, 1).result(timeout=10)
        first = engine.events(limit=1000)
        assert first.items
        clock.advance(days=31)
        assert engine.prune(timedelta(days=30)) == 1
        later = engine.start(flow, 2)
        later.result(timeout=10)
        after = engine.events(first.cursor, limit=1000)
        # Every event of the new run is after the old cursor: none was handed an id the feed had passed.
        assert {e.run_id for e in after.items} == {later.id}
        types = [e.type for e in after.items]
        assert types[0] == "run.created" and types[-1] == "run.completed"


def _old_database(path: Path) -> None:
    """A database as the schema before migration 15 left it, whose newest events were pruned."""
    before = MIGRATIONS[: MIGRATIONS.index(_events_without_autoincrement)]
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE plait_schema (version INTEGER NOT NULL)")
        for version, script in enumerate(before, start=1):
            if callable(script):
                script(conn)
            else:
                conn.executescript(script)
            conn.execute("INSERT INTO plait_schema (version) VALUES (?)", (version,))
        for seq in (1, 2, 3):
            conn.execute(
                "INSERT INTO plait_events (namespace, run_id, workflow_id, seq, type, created_at) "
                "VALUES ('default', 'r1', 'w', ?, 'run.created', 1)",
                (seq,),
            )
        conn.execute("DELETE FROM plait_events WHERE seq = 3")  # AUTOINCREMENT remembers id 3 was handed out


async def _migrate_and_log(path: Path) -> tuple[list[tuple[int, int]], list[int]]:
    store = SQLiteStore(str(path))
    await store.migrate()
    kept = [(e.id, e.seq) for e in await store.read_run_events("default", "r1", 0, 10)]
    await store.create_run(
        NewRun(
            id="r2", namespace="default", workflow_id="w", workflow_version="v", input="1", created_at=2.0, ready_at=2.0
        )
    )
    new_ids = [e.id for e in await store.read_run_events("default", "r2", 0, 10)]
    feed, _ = await store.read_events("default", None, 100)
    await store.close()
    assert [e.run_id for e in feed] == ["r1", "r1", "r2"]  # the id mark is in no namespace anyone reads
    return kept, new_ids


def test_the_migration_keeps_every_event_and_never_hands_out_an_id_again(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_database(path)
    kept, new_ids = asyncio.run(_migrate_and_log(path))
    assert kept == [(1, 1), (2, 2)]
    assert new_ids and min(new_ids) > 3
    with sqlite3.connect(path) as conn:
        created = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'plait_events'").fetchone()[0]
        assert "AUTOINCREMENT" not in created.upper()
        indexes = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'plait_events'")
        assert [row[0] for row in indexes] == ["plait_events_run"]
        # The id is the rowid itself (no separate key to keep up in every commit).
        assert conn.execute("SELECT count(*) FROM plait_events WHERE id != rowid").fetchone()[0] == 0
