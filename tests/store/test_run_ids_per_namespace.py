"""The migration to run ids per namespace keeps every existing run, step, wait, inbox event and log event."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from plait.store.base import NewRun, Store
from plait.store.postgres_schema import MIGRATIONS as POSTGRES_MIGRATIONS
from plait.store.sqlite import SQLiteStore
from plait.store.sqlite_schema import MIGRATIONS, _run_ids_per_namespace
from tests.conftest import drop_schema, postgres_base_url, with_schema

# One run of namespace "a" as the schema before the migration stored it, with a row in every table of a run.
OLD_ROWS = [
    "INSERT INTO plait_runs (id, namespace, workflow_id, workflow_version, status, input, created_at, updated_at, "
    "ready_at, wait_info) VALUES ('r1', 'a', 'w', 'v', 'waiting', '1', 1, 1, 1, NULL)",
    "INSERT INTO plait_steps (run_id, step_key, attempt, step_id, status, input, output, started_at, finished_at) "
    "VALUES ('r1', 's', 1, 's', 'succeeded', '1', '2', 1, 2)",
    "INSERT INTO plait_waits (run_id, step_key, kind, event_name, created_at) VALUES ('r1', 'w', 'event', 'paid', 1)",
    "INSERT INTO plait_inbox (run_id, name, event_id, payload, created_at) VALUES ('r1', 'paid', 'e1', '{}', 1)",
    "INSERT INTO plait_events (namespace, run_id, workflow_id, seq, type, created_at) "
    "VALUES ('a', 'r1', 'w', 1, 'run.created', 1)",
]


def another_r1(namespace: str) -> NewRun:
    return NewRun(
        id="r1", namespace=namespace, workflow_id="w2", workflow_version="v", input="2", created_at=3.0, ready_at=3.0
    )


async def check_migrated(store: Store) -> None:
    await store.migrate()
    run = await store.get_run("a", "r1")
    assert run is not None and run.status == "waiting"
    assert [(s.step_key, s.output) for s in await store.load_steps("a", "r1")] == [("s", "2")]
    assert [w.event_name for w in await store.load_waits("a", "r1")] == ["paid"]
    assert await store.peek_event("a", "r1", "paid") == "{}"
    assert [e.type for e in await store.read_run_events("a", "r1", 0, 10)] == ["run.created"]
    # Now namespace b may have its own r1, which shares nothing with a's.
    created, fresh = await store.create_run(another_r1("b"))
    assert fresh and created.workflow_id == "w2"
    assert await store.load_steps("b", "r1") == []
    assert await store.peek_event("b", "r1", "paid") is None
    assert [e.seq for e in await store.read_run_events("b", "r1", 0, 10)] == [1]
    same, again = await store.create_run(another_r1("a"))
    assert not again and same.workflow_id == "w"
    await store.close()


def test_sqlite_migration_keeps_every_row_of_existing_runs(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    before = MIGRATIONS[: MIGRATIONS.index(_run_ids_per_namespace)]
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE plait_schema (version INTEGER NOT NULL)")
        for version, script in enumerate(before, start=1):
            assert isinstance(script, str)
            conn.executescript(script)
            conn.execute("INSERT INTO plait_schema (version) VALUES (?)", (version,))
        for statement in OLD_ROWS:
            conn.execute(statement)
    asyncio.run(check_migrated(SQLiteStore(str(path))))
    with sqlite3.connect(path) as conn:
        primary_key = [row[1] for row in conn.execute("PRAGMA table_info(plait_runs)") if row[5]]
        assert sorted(primary_key) == ["id", "namespace"]


@pytest.fixture
def postgres_schema() -> Iterator[tuple[str, str]]:
    base = postgres_base_url()
    schema = f"plait_test_{uuid.uuid4().hex[:12]}"
    yield base, schema
    drop_schema(base, schema)


def test_postgres_migration_keeps_every_row_of_existing_runs(postgres_schema: tuple[str, str]) -> None:
    import psycopg

    from plait.store.postgres import PostgresStore

    base, schema = postgres_schema
    ours = next(i for i, script in enumerate(POSTGRES_MIGRATIONS) if "-- run ids per namespace" in script)
    before = POSTGRES_MIGRATIONS[:ours]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'SET search_path TO "{schema}"')
        conn.execute("CREATE TABLE plait_schema (version INTEGER NOT NULL)")
        for version, script in enumerate(before, start=1):
            conn.execute(script)
            conn.execute("INSERT INTO plait_schema (version) VALUES (%s)", (version,))
        for statement in OLD_ROWS:
            conn.execute(statement)
    asyncio.run(check_migrated(PostgresStore(with_schema(base, schema))))
