"""Timer precision and event latency with the real clock, on SQLite or PostgreSQL.

    python bench/timers.py [--timers 200] [--events 100]
    PLAIT_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test python bench/timers.py --postgres

(1) ``--timers`` runs all sleep until the same instant; each records when its
next step actually started: the overshoot past the due time, p50/p99.
(2) A run waits for an event; the time from ``send_event`` to the waiting
step's successor starting, p50/p99 over ``--events`` runs one after another.
(3) A run sleeps 20 ms (shorter than the worker's poll interval) while the
worker is idle; the overshoot of its next step, over ``--events`` runs.
The baseline is one raw durable commit on the same backend, measured in the
same run. ``--postgres`` uses a fresh schema, dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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


class Nap(BaseModel):
    n: int
    due: float


def nap_due(nap: Nap) -> datetime:
    return datetime.fromtimestamp(nap.due, UTC)


@plait.step
def mark_nap(nap: Nap) -> int:
    woke_at[nap.n] = time.time()
    return nap.n


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


def raw_postgres_commit_ms(base: str) -> float:
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE bench_raw (id serial PRIMARY KEY, payload text)")
        started = time.perf_counter()
        for _ in range(500):
            with conn.transaction():
                conn.execute("INSERT INTO bench_raw (payload) VALUES (%s)", ("x" * 200,))
        return (time.perf_counter() - started) / 500 * 1000


@contextmanager
def postgres_url(base: str) -> Iterator[str]:
    """A URL naming a fresh schema, dropped on exit."""
    import psycopg

    schema = f"plait_bench_{uuid.uuid4().hex[:8]}"
    try:
        yield f"{base}{'&' if '?' in base else '?'}schema={schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def measure(
    url: str, timers: int, events: int, concurrency: int | None
) -> tuple[list[float], list[float], list[float]]:
    """(overshoot ms per timer, send_event latency ms per event, overshoot ms per short sleep)."""
    engine = plait.Engine(url) if concurrency is None else plait.Engine(url, concurrency=concurrency)
    with engine:
        due = datetime.now(UTC) + timedelta(seconds=3)
        flow = plait.workflow("timer", input=int).sleep_until(due).then(mark).commit()
        runs = [engine.start(flow, i) for i in range(timers)]
        for run in runs:
            run.result(timeout=60)
        overshoot = [(woke_at[i] - due.timestamp()) * 1000 for i in range(timers)]

        waiter = plait.workflow("waiter", input=int).wait_for_event("ping", schema=Ping).then(mark_ping).commit()
        latency = []
        for i in range(events):
            n = 100_000 + i
            run = engine.start(waiter, n)
            engine.run_until_idle()
            sent = time.time()
            run.send_event("ping", {"n": n})
            run.result(timeout=10)
            latency.append((woke_at[n] - sent) * 1000)

        napper = plait.workflow("napper", input=Nap).sleep_until(nap_due).then(mark_nap).commit()
        short = []
        for i in range(events):
            nap = Nap(n=200_000 + i, due=time.time() + 0.02)
            engine.start(napper, nap).result(timeout=10)
            short.append((woke_at[nap.n] - nap.due) * 1000)
    return overshoot, latency, short


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timers", type=int, default=200)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--postgres", action="store_true", help="on PostgreSQL at PLAIT_TEST_POSTGRES_URL")
    parser.add_argument("--concurrency", type=int, help="the engine's concurrency (default: the engine's default)")
    args = parser.parse_args()
    if args.postgres:
        base = os.environ.get("PLAIT_TEST_POSTGRES_URL")
        if not base:
            raise SystemExit("set PLAIT_TEST_POSTGRES_URL, e.g. postgresql://postgres@127.0.0.1:5432/test")
        raw_ms = raw_postgres_commit_ms(base)
        with postgres_url(base) as url:
            overshoot, latency, short = measure(url, args.timers, args.events, args.concurrency)
        baseline, needs = "raw durable PostgreSQL commit (INSERT+COMMIT, 127.0.0.1)", 100.0
    else:
        with tempfile.TemporaryDirectory() as tmp:
            raw_ms = raw_commit_ms(Path(tmp) / "raw.db")
            overshoot, latency, short = measure(
                f"sqlite:///{Path(tmp) / 't.db'}", args.timers, args.events, args.concurrency
            )
        baseline, needs = "raw durable SQLite commit (WAL, synchronous=FULL)", 50.0
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"baseline: {baseline} {raw_ms:.2f} ms")
    print(f"{'figure':44} {'p50 ms':>8} {'p99 ms':>8}")
    print(
        f"{f'overshoot of {args.timers} timers due together':44} "
        f"{percentile(overshoot, 0.5):8.1f} {percentile(overshoot, 0.99):8.1f}"
    )
    print(f"{'send_event -> next step starts':44} {percentile(latency, 0.5):8.1f} {percentile(latency, 0.99):8.1f}")
    print(f"{'overshoot of a 20 ms sleep':44} {percentile(short, 0.5):8.1f} {percentile(short, 0.99):8.1f}")
    mean = statistics.mean(overshoot)
    print(f"(overshoot min {min(overshoot):.1f} ms, mean {mean:.1f} ms, max {max(overshoot):.1f} ms)")
    p99 = percentile(overshoot, 0.99)
    verdict = "met" if p99 < needs else "missed"
    print(
        f"target p99 overshoot of {args.timers} timers on {backend}: {p99:.1f} ms "
        f"(needs < {needs:g} ms; {p99 / raw_ms:.0f}x the raw commit) {verdict}"
    )


if __name__ == "__main__":
    main()
