"""Throughput on PostgreSQL: sequential per-step cost, and fan-out over 1, 2 and 4 worker processes.

    PLAIT_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test python bench/throughput.py
        [--runs 500] [--steps 5] [--workers 1,2,4] [--sequential-runs 100]

(1) Sequential: one run at a time of 10 no-op async steps, next to raw
single-row INSERT + COMMITs on the same server, in 10 alternating rounds of
the same run (medians), so server noise hits both sides alike; each ratio is
the median of the rounds' own ratios (a round's raw and plait parts run back to
back, so a slow spell of the disk moves both). Raw baselines:
a regular (WAL-logged) table over a hot synchronous connection and over an
async connection driven from an event loop thread (how plait reaches the
database); the target divides by the async one ("the same kind of
connection"). The TEMP-table figure is printed for reference only: a temp
table is not WAL-logged, so its COMMIT flushes nothing to disk, unlike a step.
(2) Fan-out: ``--runs`` runs are enqueued by a client and processed by N
worker processes (``plait worker`` equivalents); runs/s and steps/s from the
first enqueue to the last run finishing. Each measurement uses a fresh schema.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Coroutine
from typing import Any, NamedTuple, TypeVar

import psycopg

import plait

T = TypeVar("T")


@plait.step
async def noop(x: int) -> int:
    return x + 1


def chain(steps: int) -> plait.Workflow[int, int]:
    builder = plait.workflow("bench_chain", input=int)
    for i in range(steps):
        builder = builder.then(noop.with_options(id=f"s{i}"))
    return builder.commit()


def schema_url(base: str) -> tuple[str, str]:
    schema = f"plait_bench_{uuid.uuid4().hex[:8]}"
    return f"{base}{'&' if '?' in base else '?'}schema={schema}", schema


def drop(base: str, schema: str) -> None:
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


RAW_INSERT = "INSERT INTO {} (payload) VALUES (%s)"


def raw_commit_seconds(conn: psycopg.Connection[tuple[object, ...]], table: str, count: int) -> float:
    query = RAW_INSERT.format(table)
    started = time.perf_counter()
    for _ in range(count):
        with conn.transaction():
            conn.execute(query, ("x" * 200,))
    return (time.perf_counter() - started) / count


async def raw_commit_seconds_async(conn: psycopg.AsyncConnection[tuple[object, ...]], table: str, count: int) -> float:
    query = RAW_INSERT.format(table)
    started = time.perf_counter()
    for _ in range(count):
        async with conn.transaction():
            await conn.execute(query, ("x" * 200,))
    return (time.perf_counter() - started) / count


class Sequential(NamedTuple):
    """Per round: seconds per commit of each raw baseline, and per plait step."""

    raw_temp: list[float]  # TEMP table: not WAL-logged, its commit is not durable (reference only)
    raw_sync: list[float]  # regular table, hot synchronous connection
    raw_async: list[float]  # regular table, async connection on an event loop thread (the target's baseline)
    step: list[float]

    def median(self, name: str) -> float:
        times: list[float] = getattr(self, name)
        return statistics.median(times)

    def ratio(self, baseline: str) -> float:
        """The median over rounds of plait's step time divided by the baseline's in the same round."""
        raws: list[float] = getattr(self, baseline)
        return statistics.median(step / raw for step, raw in zip(self.step, raws, strict=True))


def sequential(base: str, runs: int, steps: int, rounds: int = 10) -> Sequential:
    """Alternating rounds of each raw baseline and of plait's sequential step."""
    url, schema = schema_url(base)
    times: dict[str, list[float]] = {name: [] for name in Sequential._fields}
    raw_count = runs * steps // 2
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="bench-raw-loop", daemon=True)
    thread.start()

    def on_loop(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    try:
        flow = chain(steps)
        with plait.Engine(url) as engine, psycopg.connect(base, autocommit=True) as conn:
            table = f'"{schema}".bench_raw'
            conn.execute("CREATE TEMP TABLE bench_raw_temp (id serial PRIMARY KEY, payload text)")
            conn.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, payload text)")
            aconn = on_loop(psycopg.AsyncConnection.connect(base, autocommit=True))
            engine.start(flow, 0).result(timeout=60)
            for _ in range(rounds):
                times["raw_temp"].append(raw_commit_seconds(conn, "bench_raw_temp", raw_count))
                times["raw_sync"].append(raw_commit_seconds(conn, table, raw_count))
                times["raw_async"].append(on_loop(raw_commit_seconds_async(aconn, table, raw_count)))
                started = time.perf_counter()
                for i in range(runs):
                    engine.start(flow, i).result(timeout=60)
                times["step"].append((time.perf_counter() - started) / (runs * steps))
            on_loop(aconn.close())
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
        drop(base, schema)
    return Sequential(*(times[name] for name in Sequential._fields))


def fan_out(base: str, workers: int, runs: int, steps: int) -> float:
    """Seconds for ``runs`` runs to finish on ``workers`` worker processes."""
    url, schema = schema_url(base)
    flow = chain(steps)
    with plait.Engine(url, worker=False) as client:
        client.register(flow)
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", url, "--steps", str(steps)], stdout=subprocess.PIPE, text=True
            )
            for _ in range(workers)
        ]
        try:
            for proc in procs:
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            started = time.perf_counter()
            handles = [client.start(flow, i) for i in range(runs)]
            for handle in handles:
                handle.result(timeout=600)
            return time.perf_counter() - started
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.communicate(timeout=60)
            drop(base, schema)


def run_worker(url: str, steps: int) -> None:
    engine = plait.Engine(url, poll_interval=0.05)
    engine.register(chain(steps))
    print("ready", flush=True)
    engine.work(concurrency=64, grace=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--workers", default="1,2,4", help="worker counts for the fan-out; '' skips it")
    parser.add_argument("--sequential-runs", type=int, default=100)
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, args.steps)
        return
    base = os.environ.get("PLAIT_TEST_POSTGRES_URL")
    if not base:
        raise SystemExit("set PLAIT_TEST_POSTGRES_URL, e.g. postgresql://postgres@127.0.0.1:5432/test")
    seq = sequential(base, max(1, args.sequential_runs // 10), 10)
    print(f"machine: {os.cpu_count()} cores; PostgreSQL on 127.0.0.1; medians of {len(seq.step)} rounds")
    print(
        f"raw INSERT+COMMIT (200 B row), TEMP table, sync conn:   {seq.median('raw_temp') * 1e3:7.3f} ms  (not durable)"
    )
    print(f"raw INSERT+COMMIT (200 B row), sync conn:               {seq.median('raw_sync') * 1e3:7.3f} ms")
    print(
        f"raw INSERT+COMMIT (200 B row), async conn on a loop:    {seq.median('raw_async') * 1e3:7.3f} ms  "
        "(target baseline)"
    )
    print(
        f"plait sequential step (async no-op):                    {seq.median('step') * 1e3:7.3f} ms  "
        f"({seq.ratio('raw_temp'):.2f}x temp, {seq.ratio('raw_sync'):.2f}x sync, {seq.ratio('raw_async'):.2f}x async)"
    )
    ratio = seq.ratio("raw_async")
    print(
        f"target sequential step / raw commit (async conn): {ratio:.2f}x (needs <= 2.5x) "
        f"{'met' if ratio <= 2.5 else 'missed'}"
    )
    if not args.workers.strip():
        return
    print(f"fan-out: {args.runs} runs x {args.steps} no-op steps")
    print(f"{'workers':>8} {'seconds':>8} {'runs/s':>8} {'steps/s':>8}")
    for count in (int(n) for n in args.workers.split(",")):
        seconds = fan_out(base, count, args.runs, args.steps)
        print(f"{count:8d} {seconds:8.2f} {args.runs / seconds:8.1f} {args.runs * args.steps / seconds:8.1f}")


if __name__ == "__main__":
    main()
