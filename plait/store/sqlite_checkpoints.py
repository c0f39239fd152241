"""WAL checkpoints on a thread of their own, so the event loop's commits seldom wait for one.

In WAL mode every commit appends pages to the ``-wal`` file, and a
checkpoint copies them back into the database file and syncs it. SQLite runs
one inside whichever commit pushes the WAL past 1,000 pages: a step's commit
then stalls for the copy and two syncs, on the engine's event loop. Here the
engine's connection checkpoints itself only as a backstop, at ``BACKSTOP_PAGES``,
and this thread runs a PASSIVE checkpoint (one that never blocks a writer or
a reader) on its own connection after every ``COMMITS_PER_CHECKPOINT``
commits, and once a second while commits keep coming.

A PASSIVE checkpoint cannot catch up with a steady stream of commits (the
WAL restarts from its beginning only once every page in it is copied); the
backstop, run in a commit that holds the write lock, does, and it has little
left to copy.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger("plait.store")

COMMITS_PER_CHECKPOINT = 128
# While commits keep coming, a PASSIVE checkpoint never catches up with the last pages, so the WAL only
# restarts from its beginning after the backstop: this bounds the WAL file (about 8 MB) and keeps the
# backstop's own copy small, as the background thread has already copied nearly everything.
BACKSTOP_PAGES = 2_000


class Checkpointer:
    """Checkpoints one SQLite file's WAL in the background; ``committed()`` after each commit."""

    def __init__(self, path: str, synchronous: str) -> None:
        self._path = path
        self._synchronous = synchronous
        self._commits = 0
        self._due = threading.Event()
        self._stopping = False
        self.rounds = 0  # checkpoints run so far, for tests
        # Opened here, while the file is known to exist: never reopened, so a deleted database is not recreated.
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
        self._conn.execute(f"PRAGMA synchronous={synchronous}")
        self._thread = threading.Thread(target=self._run, name="plait-sqlite-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        self._commits += 1
        if self._commits % COMMITS_PER_CHECKPOINT == 0:
            self._due.set()

    def _run(self) -> None:
        seen = 0
        while not self._stopping:
            self._due.wait(timeout=1.0)
            self._due.clear()
            if self._stopping:
                break
            if self._commits == seen:  # nothing written since the last checkpoint
                continue
            seen = self._commits
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.rounds += 1
            except sqlite3.Error as exc:  # a full disk, say: the backstop and the next round try again
                log.debug("plait: background checkpoint of %r failed: %s", self._path, exc)
        try:
            self._conn.close()
        except sqlite3.Error as exc:
            log.debug("plait: closing the checkpoint connection of %r failed: %s", self._path, exc)

    def close(self) -> None:
        self._stopping = True
        self._due.set()
        self._thread.join(timeout=10)
