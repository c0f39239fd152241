"""Where a sequential SQLite step's time goes: per step and per run, WAL pages per commit, thread hand-offs.

    python bench/anatomy.py [--runs 300] [--rounds 3] [--durability full|normal]

(1) Runs of 1, 10 and 30 no-op async steps, one at a time: the cost of one more step (the slope) and
of the run itself (the intercept: its first commit, its larger last one, the hand-offs between the
caller's thread and the engine's loop). (2) The WAL pages each commit writes, by table or index,
counted by reading the frames a batch of runs appends to the ``-wal`` file; next to them, the one
page of a raw commit, and what a commit of 1, 3 and 5 pages costs (one ~200-byte row in each of that
many tables, in alternating rounds): whether pages, rather than commits, are what a step pays for.
(3) One round trip to a step thread and back, as a ``def`` step pays it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sqlite3
import statistics
import struct
import tempfile
import time
from pathlib import Path
from typing import Literal

from steps import async_noop, raw_commit_seconds, sequential_flow  # the sibling bench script (bench/ is on the path)

import plait
from plait.step_threads import StepThreads

Durability = Literal["full", "normal"]


def chain(steps: int) -> plait.Workflow[int, int]:
    return sequential_flow(async_noop.with_options(id=f"noop{steps}"), steps)


def slope_and_intercept(url: str, runs: int, rounds: int, durability: Durability) -> dict[int, float]:
    """Median µs per run of chains of 1, 10 and 30 steps."""
    flows = {steps: chain(steps) for steps in (1, 10, 30)}
    per_run: dict[int, list[float]] = {steps: [] for steps in flows}
    with plait.Engine(url, durability=durability) as engine:
        for flow in flows.values():
            engine.start(flow, 0).result(timeout=60)
        for _ in range(rounds):
            for steps, flow in flows.items():
                count = max(3, runs * 10 // steps)
                started = time.perf_counter()
                for i in range(count):
                    engine.start(flow, i).result(timeout=60)
                per_run[steps].append((time.perf_counter() - started) / count * 1e6)
    return {steps: statistics.median(values) for steps, values in per_run.items()}


def wal_frames(before: bytes, after: bytes) -> list[tuple[int, bool]]:
    """(page number, ends a commit) of the WAL frames written between two copies of the ``-wal`` file."""
    page_size = struct.unpack(">I", after[8:12])[0]
    size = 24 + page_size
    salt = after[16:24]
    frames = []
    for offset in range(32, len(after) - size + 1, size):
        frame = after[offset : offset + size]
        if frame[8:16] != salt or frame == before[offset : offset + size]:
            continue  # of an older generation of the file, or there already
        page, commit_size = struct.unpack(">II", frame[:8])
        frames.append((page, commit_size != 0))
    return frames


def pages_per_commit(folder: Path, events: bool) -> tuple[float, dict[str, float]]:
    """WAL pages per commit of 10-step runs, and their split by table or index."""
    db = folder / f"pages_{events}.db"
    wal = Path(f"{db}-wal")
    with plait.Engine(f"sqlite:///{db}", events=events) as engine:
        flow = chain(10)
        for i in range(100):
            engine.start(flow, i).result(timeout=60)
        before = wal.read_bytes()
        for i in range(20):
            engine.start(flow, i).result(timeout=60)
        frames = wal_frames(before, wal.read_bytes())
        with sqlite3.connect(db) as conn:
            try:
                owner = dict((page, name) for name, page in conn.execute("SELECT name, pageno FROM dbstat").fetchall())
            except sqlite3.OperationalError:  # SQLite built without the dbstat table: pages stay unnamed
                owner = {}
    commits = max(1, sum(1 for _, ends in frames if ends))
    named = collections.Counter(owner.get(page, "page 1 (header)" if page == 1 else "?") for page, _ in frames)
    return len(frames) / commits, {name: count / commits for name, count in named.most_common()}


def hand_off_us(count: int) -> float:
    """µs of one call to a step thread and back."""

    async def measure() -> float:
        threads = StepThreads(asyncio.get_running_loop(), "anatomy", max_threads=2)
        await threads.run(lambda: None)
        started = time.perf_counter()
        for _ in range(count):
            await threads.run(lambda: None)
        threads.close()
        return (time.perf_counter() - started) / count * 1e6

    return asyncio.run(measure())


def wal_connection(path: Path, durability: str) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode with plait's ``synchronous`` setting, committing explicitly."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={durability.upper()}")
    return conn


def raw_commit_us(folder: Path, durability: str, count: int = 1000) -> float:
    conn = wal_connection(folder / "raw.db", durability)
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, payload TEXT)")
    try:
        return raw_commit_seconds(conn, count) * 1e6
    finally:
        conn.close()


def commit_us_by_pages(folder: Path, durability: str, rounds: int, count: int = 300) -> dict[int, float]:
    """Median µs of a commit writing one row into each of 1, 3 and 5 tables (so about that many WAL pages)."""
    conns: dict[int, sqlite3.Connection] = {}
    for pages in (1, 3, 5):
        conn = wal_connection(folder / f"pages{pages}.db", durability)
        for table in range(pages):
            conn.execute(f"CREATE TABLE t{table} (id INTEGER PRIMARY KEY, payload TEXT)")
        conns[pages] = conn
    timings: dict[int, list[float]] = {pages: [] for pages in conns}
    payload = "x" * 200
    for _ in range(rounds):
        for pages, conn in conns.items():
            started = time.perf_counter()
            for _ in range(count):
                conn.execute("BEGIN IMMEDIATE")
                for table in range(pages):
                    conn.execute(f"INSERT INTO t{table} (payload) VALUES (?)", (payload,))
                conn.execute("COMMIT")
            timings[pages].append((time.perf_counter() - started) / count * 1e6)
    for conn in conns.values():
        conn.close()
    return {pages: statistics.median(values) for pages, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300, help="runs of 10 steps per round (others scaled)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--durability", choices=["full", "normal"], default="full")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        raw = raw_commit_us(folder, args.durability)
        durability: Durability = "full" if args.durability == "full" else "normal"
        per_run = slope_and_intercept(f"sqlite:///{folder / 'runs.db'}", args.runs, args.rounds, durability)
        slope = (per_run[30] - per_run[1]) / 29
        intercept = per_run[1] - slope
        print(f"SQLite WAL, synchronous={args.durability.upper()}; raw durable commit {raw:.0f} µs")
        print(f"µs per run of 1 / 10 / 30 async no-op steps: {per_run[1]:.0f} / {per_run[10]:.0f} / {per_run[30]:.0f}")
        print(f"one more step: {slope:.0f} µs ({slope / raw:.2f}x a raw commit)")
        print(f"the run itself: {intercept:.0f} µs ({intercept / 10:.0f} µs per step of a 10-step run)")
        for events in (True, False):
            pages, split = pages_per_commit(folder, events)
            parts = ", ".join(f"{name} {count:.2f}" for name, count in split.items())
            print(f"WAL pages per commit, events={'on' if events else 'off'}: {pages:.2f} ({parts}); raw commit: 1")
        by_pages = commit_us_by_pages(folder, args.durability, max(5, args.rounds * 2))
        costs = " / ".join(f"{us:.0f}" for us in by_pages.values())
        print(f"µs per commit of 1 / 3 / 5 pages (one row in each of that many tables): {costs}")
    print(f"hand-off to a step thread and back: {hand_off_us(5000):.0f} µs")


if __name__ == "__main__":
    main()
