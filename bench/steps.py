"""Per-step cost of sequential workflows on SQLite, next to a raw durable commit.

    python bench/steps.py [--runs 200] [--steps 10] [--durability full|normal]

Both figures are measured in the same run, on the same disk, with the same
journal (WAL) and ``synchronous`` setting, so the ratio is what matters.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import plait


@plait.step
def noop(x: int) -> int:
    return x + 1


def raw_commit_seconds(path: Path, durability: str, count: int) -> float:
    """Median seconds of one INSERT + COMMIT of a ~200-byte row."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={durability.upper()}")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT)")
    payload = "x" * 200
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (payload) VALUES (?)", (payload,))
        conn.execute("COMMIT")
        timings.append(time.perf_counter() - started)
    conn.close()
    return statistics.median(timings)


def plait_seconds_per_step(path: Path, durability: str, runs: int, steps: int) -> float:
    builder = plait.workflow("bench_steps", input=int)
    for i in range(steps):
        builder = builder.then(noop.with_options(id=f"s{i}"))
    flow = builder.commit()
    with plait.Engine(f"sqlite:///{path}", durability=durability) as engine:  # type: ignore[arg-type]
        engine.start(flow, 0).result(timeout=60)  # warm up
        started = time.perf_counter()
        for i in range(runs):
            assert engine.start(flow, i).result(timeout=60) == i + steps
        elapsed = time.perf_counter() - started
    return elapsed / (runs * steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--durability", choices=["full", "normal"], default="full")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw = raw_commit_seconds(Path(tmp) / "raw.db", args.durability, 2000)
        per_step = plait_seconds_per_step(Path(tmp) / "plait.db", args.durability, args.runs, args.steps)
    print(f"machine: {os.cpu_count()} cores; WAL, synchronous={args.durability.upper()}")
    print(f"raw durable commit (200-byte row): {raw * 1e6:8.1f} us")
    print(f"plait sequential step:             {per_step * 1e6:8.1f} us  ({1 / per_step:,.0f} steps/s)")
    print(f"ratio plait step / raw commit:     {per_step / raw:8.2f}x  (target <= 2x)")
    print(f"workload: {args.runs} runs x {args.steps} no-op steps, one at a time")


if __name__ == "__main__":
    main()
