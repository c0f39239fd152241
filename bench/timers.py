"""Timer precision and event latency with the real clock, on SQLite.

    python bench/timers.py [--timers 200] [--events 100]

(1) ``--timers`` runs all sleep until the same instant; each records when its
next step actually started: the overshoot past the due time, p50/p99.
(2) A run waits for an event; the time from ``send_event`` to the waiting
step's successor starting, p50/p99 over ``--events`` runs one after another.
The baseline is one raw durable SQLite commit measured in the same run.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel

import plait

woke_at: dict[int, float] = {}


class Ping(BaseModel):
    n: int


@plait.step
def mark(x: int) -> int:
    woke_at[x] = time.time()
    return x


@plait.step
def mark_ping(ping: Ping) -> int:
    woke_at[ping.n] = time.time()
    return ping.n


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def raw_commit_ms(path: Path) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT)")
    started = time.perf_counter()
    for _ in range(500):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (payload) VALUES (?)", ("x" * 200,))
        conn.execute("COMMIT")
    conn.close()
    return (time.perf_counter() - started) / 500 * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timers", type=int, default=200)
    parser.add_argument("--events", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw_ms = raw_commit_ms(Path(tmp) / "raw.db")
        with plait.Engine(f"sqlite:///{Path(tmp) / 't.db'}") as engine:
            due = datetime.now(UTC) + timedelta(seconds=3)
            timers = plait.workflow("timer", input=int).sleep_until(due).then(mark).commit()
            runs = [engine.start(timers, i) for i in range(args.timers)]
            for run in runs:
                run.result(timeout=60)
            overshoot = [(woke_at[i] - due.timestamp()) * 1000 for i in range(args.timers)]

            waiter = plait.workflow("waiter", input=int).wait_for_event("ping", schema=Ping).then(mark_ping).commit()
            latency = []
            for i in range(args.events):
                n = 100_000 + i
                run = engine.start(waiter, n)
                engine.run_until_idle()
                sent = time.time()
                run.send_event("ping", {"n": n})
                run.result(timeout=10)
                latency.append((woke_at[n] - sent) * 1000)
    print(f"baseline: raw durable SQLite commit {raw_ms:.2f} ms (WAL, synchronous=FULL)")
    print(f"{'figure':44} {'p50 ms':>8} {'p99 ms':>8}")
    print(
        f"{f'overshoot of {args.timers} timers due together':44} "
        f"{percentile(overshoot, 0.5):8.1f} {percentile(overshoot, 0.99):8.1f}"
    )
    print(f"{'send_event -> next step starts':44} {percentile(latency, 0.5):8.1f} {percentile(latency, 0.99):8.1f}")
    mean = statistics.mean(overshoot)
    print(f"(overshoot min {min(overshoot):.1f} ms, mean {mean:.1f} ms)")
    p99 = percentile(overshoot, 0.99)
    verdict = "met" if p99 < 50 else "missed"
    print(f"target p99 overshoot of {args.timers} timers: {p99:.1f} ms (needs < 50 ms) {verdict}")


if __name__ == "__main__":
    main()
