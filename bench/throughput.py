"""Throughput on PostgreSQL: sequential per-step cost, and fan-out over 1, 2 and 4 worker processes.

    PLAIT_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test python bench/throughput.py
        [--runs 500] [--steps 5] [--workers 1,2,4] [--sequential-runs 100]

(1) Sequential: one run at a time of 10 no-op async steps, next to a raw
single-row INSERT + COMMIT on the same server, in alternating rounds of the
same run (medians of 5), so server noise hits both sides alike.
(2) Fan-out: ``--runs`` runs are enqueued by a client and processed by N
worker processes (``plait worker`` equivalents); runs/s and steps/s from the
first enqueue to the last run finishing. Each measurement uses a fresh schema.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid

import psycopg

import plait


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


def raw_commit_seconds(conn: psycopg.Connection[tuple[object, ...]], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        with conn.transaction():
            conn.execute("INSERT INTO bench_raw (payload) VALUES (%s)", ("x" * 200,))
    return (time.perf_counter() - started) / count


def sequential(base: str, runs: int, steps: int, rounds: int = 5) -> tuple[float, float]:
    """Medians over alternating rounds: (raw commit seconds, plait seconds per step)."""
    url, schema = schema_url(base)
    raw_times: list[float] = []
    step_times: list[float] = []
    try:
        flow = chain(steps)
        with plait.Engine(url) as engine, psycopg.connect(base, autocommit=True) as conn:
            conn.execute("CREATE TEMP TABLE bench_raw (id serial PRIMARY KEY, payload text)")
            engine.start(flow, 0).result(timeout=60)
            for _ in range(rounds):
                raw_times.append(raw_commit_seconds(conn, runs * steps // 2))
                started = time.perf_counter()
                for i in range(runs):
                    engine.start(flow, i).result(timeout=60)
                step_times.append((time.perf_counter() - started) / (runs * steps))
    finally:
        drop(base, schema)
    return statistics.median(raw_times), statistics.median(step_times)


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
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--sequential-runs", type=int, default=100)
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, args.steps)
        return
    base = os.environ.get("PLAIT_TEST_POSTGRES_URL")
    if not base:
        raise SystemExit("set PLAIT_TEST_POSTGRES_URL, e.g. postgresql://postgres@127.0.0.1:5432/test")
    raw, per_step = sequential(base, args.sequential_runs // 5, 10)
    print(f"machine: {os.cpu_count()} cores; PostgreSQL on 127.0.0.1")
    print(f"raw INSERT+COMMIT (200 B row):      {raw * 1e3:7.3f} ms")
    ratio = per_step / raw
    print(f"plait sequential step (async no-op): {per_step * 1e3:7.3f} ms  ({ratio:.2f}x raw)")
    print(f"target sequential step / raw commit: {ratio:.2f}x (needs <= 2.5x) {'met' if ratio <= 2.5 else 'missed'}")
    print(f"fan-out: {args.runs} runs x {args.steps} no-op steps")
    print(f"{'workers':>8} {'seconds':>8} {'runs/s':>8} {'steps/s':>8}")
    for count in (int(n) for n in args.workers.split(",")):
        seconds = fan_out(base, count, args.runs, args.steps)
        print(f"{count:8d} {seconds:8.2f} {args.runs / seconds:8.1f} {args.runs * args.steps / seconds:8.1f}")


if __name__ == "__main__":
    main()
