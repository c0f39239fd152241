"""The stores on real databases: migrations (one SQLite file, one PostgreSQL schema), fencing, locking."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from plait.errors import LeaseLost, RunCancelledSignal, StoreUnavailable
from plait.store.base import Lease, NewRun, StepRow
from plait.store.postgres_schema import MIGRATIONS as POSTGRES_MIGRATIONS
from plait.store.sqlite import SQLiteStore
from plait.store.sqlite_schema import MIGRATIONS
from tests.conftest import run_sql


def new_run(run_id: str, owner: str | None = "me:1:1") -> NewRun:
    return NewRun(
        id=run_id, namespace="default", workflow_id="w", workflow_version="v", input="1",
        created_at=1.0, ready_at=1.0, owner=owner, lease_expires_at=1e12 if owner else None,
    )  # fmt: skip


def step_row(run_id: str, key: str = "s", attempt: int = 1) -> StepRow:
    return StepRow(run_id, key, key, attempt, "succeeded", "1", "2", None, 1.0, 2.0)


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_migrations_from_empty_give_the_current_schema_once(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = SQLiteStore(str(path))
    asyncio.run(store.migrate())
    asyncio.run(store.migrate())
    assert asyncio.run(store.schema_version()) == len(MIGRATIONS)
    assert {"plait_schema", "plait_runs", "plait_steps"} <= tables(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM plait_schema").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_processes_migrating_together_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    code = (
        "import asyncio, sys; from plait.store.sqlite import SQLiteStore; "
        "asyncio.run(SQLiteStore(sys.argv[1]).migrate())"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], stderr=subprocess.PIPE) for _ in range(5)]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM plait_schema").fetchone()[0] == len(MIGRATIONS)


def test_commit_with_a_stale_lease_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SQLiteStore(str(tmp_path / "f.db"))
        await store.migrate()
        run, _ = await store.create_run(new_run("r1"))
        stale = Lease("r1", run.lease_token, "default")
        await store.record_step(stale, step_row("r1", "a"))
        await store.release_owners("default", ["me:1:1"])
        claimed = await store.claim_runs("default", "other:2:2", ["w@v"], 5.0, 5.0, 1e12, 10)
        assert [r.lease_token for r in claimed] == [run.lease_token + 1]
        with pytest.raises(LeaseLost, match="taken over"):
            await store.record_step(stale, step_row("r1", "b"))
        with pytest.raises(LeaseLost):
            await store.finish_run(stale, "succeeded", "1", None, 6.0, None)
        assert [s.step_key for s in await store.load_steps("default", "r1")] == ["a"]
        row = await store.get_run("default", "r1")
        assert row is not None and row.status == "running" and row.owner == "other:2:2"
        await store.cancel_run("default", "r1", 7.0)
        with pytest.raises(RunCancelledSignal):
            await store.record_step(Lease("r1", claimed[0].lease_token, "default"), step_row("r1", "c"))
        await store.close()

    asyncio.run(scenario())


def test_writer_waits_for_another_process_lock_then_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "l.db"

    async def create(store: SQLiteStore, run_id: str) -> None:
        await store.create_run(new_run(run_id, owner=None))

    store = SQLiteStore(str(path), lock_timeout=0.5)
    asyncio.run(store.migrate())
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    released = threading.Timer(0.2, lambda: blocker.execute("COMMIT"))
    released.start()
    asyncio.run(create(store, "waited"))  # succeeds once the other writer commits
    released.join()
    blocker.execute("BEGIN IMMEDIATE")
    store._conn.execute("PRAGMA busy_timeout=10")
    with pytest.raises(StoreUnavailable, match="stayed locked"):
        asyncio.run(create(store, "never"))
    blocker.execute("ROLLBACK")
    blocker.close()
    assert asyncio.run(store.get_run("default", "never")) is None
    assert asyncio.run(store.get_run("default", "waited")) is not None


def test_marking_runs_stranded_without_a_version_takes_no_write_lock_when_none_are(tmp_path: Path) -> None:
    # The worker asks on the first poll after each claim; with nothing to mark it must not wait for the lock.
    path = tmp_path / "s.db"
    store = SQLiteStore(str(path), lock_timeout=0.2)
    asyncio.run(store.migrate())
    asyncio.run(store.create_run(new_run("r1", owner=None)))
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    store._conn.execute("PRAGMA busy_timeout=10")
    assert asyncio.run(store.mark_waiting_for_version("default", ["w@v"], 2.0)) == 0
    blocker.execute("ROLLBACK")
    blocker.close()
    assert asyncio.run(store.mark_waiting_for_version("default", ["other@v"], 2.0)) == 1
    run = asyncio.run(store.get_run("default", "r1"))
    assert run is not None and run.status_message is not None and "'w' version 'v'" in run.status_message


def test_ten_processes_migrating_one_postgres_schema_migrate_once(postgres_url: str) -> None:
    code = (
        "import asyncio, sys; from plait.store.postgres import PostgresStore\n"
        "async def main():\n"
        "    store = PostgresStore(sys.argv[1])\n"
        "    await store.migrate()\n"
        "    await store.close()\n"
        "asyncio.run(main())"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, postgres_url], stderr=subprocess.PIPE) for _ in range(10)]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert run_sql(postgres_url, "SELECT count(*) FROM plait_schema") == [(len(POSTGRES_MIGRATIONS),)]
