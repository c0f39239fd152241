"""The WAL is checkpointed by a thread of its own, not inside the engine's commits."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from plait.store.sqlite_checkpoints import COMMITS_PER_CHECKPOINT, Checkpointer


def test_commits_are_checkpointed_in_the_background(tmp_path: Path) -> None:
    path = str(tmp_path / "wal.db")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # the writer never checkpoints itself
    writer.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT)")
    checkpoints = Checkpointer(path, "FULL")
    try:
        for _ in range(COMMITS_PER_CHECKPOINT):
            writer.execute("INSERT INTO t (payload) VALUES (?)", ("x" * 200,))
            checkpoints.committed()
        done = threading.Event()
        for _ in range(1000):  # the background thread's round: wait for it, not for a timer
            if checkpoints.rounds:
                done.set()
                break
            done.wait(0.01)
        assert done.is_set()
        # The pages reached the database file itself (in WAL mode only a checkpoint writes there).
        assert os.path.getsize(path) >= 4096 * 3
    finally:
        checkpoints.close()
        writer.close()
    assert sqlite3.connect(path).execute("SELECT count(*) FROM t").fetchone()[0] == COMMITS_PER_CHECKPOINT
