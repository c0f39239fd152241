"""Per-step cost of sequential workflows on SQLite, next to a raw durable commit.

    python bench/steps.py [--runs 100] [--steps 10] [--rounds 5] [--durability full|normal]
        [--concurrent 200]

The raw commit (INSERT of a ~200-byte row + COMMIT) and plait's steps are
measured in alternating rounds, in the same process, on the same disk, with
the same journal (WAL) and ``synchronous`` setting; medians over the rounds
are reported, so disk noise hits both sides alike. Then ``--concurrent`` runs
of the same steps are started at once (from 8 threads) and the steps per
second until the last finishes are set against one raw commit per second.
Each of plait's targets is printed with its ratio and "met" or "missed".
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import plait


@plait.step
async def async_noop(x: int) -> int:
    return x + 1


@plait.step
def sync_noop(x: int) -> int:
    return x + 1


@plait.step
async def async_llm(ctx: plait.Context, x: int) -> int:
    # One model call's usage per step, priced from the genai-prices table (varying counts: no cache hits).
    ctx.record_usage(model="gpt-4o-mini", provider="openai", input_tokens=1200 + x % 97, output_tokens=300)
    return x + 1


def raw_commit_seconds(conn: sqlite3.Connection, count: int) -> float:
    """Mean seconds of one INSERT + COMMIT of a ~200-byte row."""
    payload = "x" * 200
    started = time.perf_counter()
    for _ in range(count):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (payload) VALUES (?)", (payload,))
        conn.execute("COMMIT")
    return (time.perf_counter() - started) / count


def sequential_flow(step: plait.Step[int, int], steps: int) -> plait.Workflow[int, int]:
    builder = plait.workflow(f"bench_{step.id}", input=int)
    for i in range(steps):
        builder = builder.then(step.with_options(id=f"s{i}"))
    return builder.commit()


def plait_seconds_per_step(engine: plait.Engine, flow: plait.Workflow[int, int], runs: int, steps: int) -> float:
    started = time.perf_counter()
    for i in range(runs):
        assert engine.start(flow, i).result(timeout=60) == i + steps
    return (time.perf_counter() - started) / (runs * steps)


def concurrent_steps_per_second(engine: plait.Engine, flow: plait.Workflow[int, int], runs: int, steps: int) -> float:
    """Steps per second of ``runs`` runs started at once, from the first start to the last result."""
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as starters:
        handles = list(starters.map(lambda i: engine.start(flow, i), range(runs)))
    for i, handle in enumerate(handles):
        assert handle.result(timeout=300) == i + steps
    return runs * steps / (time.perf_counter() - started)


def verdict(label: str, value: float, limit: float, *, at_most: bool = True, unit: str = "x") -> str:
    met = value <= limit if at_most else value > limit
    sign = "<=" if at_most else ">"
    return f"target {label}: {value:.2f}{unit} (needs {sign} {limit:g}{unit}) {'met' if met else 'missed'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--durability", choices=["full", "normal"], default="full")
    parser.add_argument("--concurrent", type=int, default=200)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"raw": [], "async": [], "sync": [], "usage": [], "no_events": []}
    with tempfile.TemporaryDirectory() as tmp:
        raw = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute(f"PRAGMA synchronous={args.durability.upper()}")
        raw.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT)")
        flows: dict[str, Any] = {
            "async": sequential_flow(async_noop, args.steps),
            "sync": sequential_flow(sync_noop, args.steps),
            "usage": sequential_flow(async_llm, args.steps),
        }
        durability = args.durability
        with (
            plait.Engine(f"sqlite:///{Path(tmp) / 'plait.db'}", durability=durability) as engine,
            plait.Engine(f"sqlite:///{Path(tmp) / 'quiet.db'}", durability=durability, events=False) as quiet,
        ):
            for flow in flows.values():
                engine.start(flow, 0).result(timeout=60)  # warm up
            quiet.start(flows["async"], 0).result(timeout=60)
            for _ in range(args.rounds):
                results["raw"].append(raw_commit_seconds(raw, args.runs * args.steps // 2))
                for kind, flow in flows.items():
                    results[kind].append(plait_seconds_per_step(engine, flow, args.runs, args.steps))
                results["no_events"].append(plait_seconds_per_step(quiet, flows["async"], args.runs, args.steps))
            concurrent: list[float] = []
            concurrent_raw: list[float] = []
            for _ in range(max(1, args.rounds // 2)):
                concurrent_raw.append(raw_commit_seconds(raw, args.runs * args.steps // 2))
                concurrent.append(concurrent_steps_per_second(engine, flows["async"], args.concurrent, args.steps))
        raw.close()
    raw_s = statistics.median(results["raw"])
    sync_mode = args.durability.upper()
    print(f"machine: {os.cpu_count()} cores; SQLite WAL, synchronous={sync_mode}; median of {args.rounds} rounds")
    print(f"workload: {args.runs} runs x {args.steps} no-op steps, one run at a time")
    print(f"{'figure':34} {'us':>8} {'per s':>9} {'/ raw':>7}")
    print(f"{'raw durable commit (200 B row)':34} {raw_s * 1e6:8.1f} {1 / raw_s:9,.0f} {1:7.2f}")
    rows = (
        ("async", "plait step, async def"),
        ("sync", "plait step, def (thread pool)"),
        ("usage", "plait step, async, record_usage"),
        ("no_events", "plait step, async, events=False"),
    )
    for kind, label in rows:
        value = statistics.median(results[kind])
        print(f"{label:34} {value * 1e6:8.1f} {1 / value:9,.0f} {value / raw_s:7.2f}")
    # The event log's share of a step: the part of the async step's cost that events=False saves.
    share = 1 - statistics.median(results["no_events"]) / statistics.median(results["async"])
    overhead = statistics.median(results["async"]) / statistics.median(results["no_events"]) - 1
    print(f"event log cost: {overhead * 100:+.1f}% per step, {share * 100:+.1f}% of a step's cost")
    usage_cost = statistics.median(results["usage"]) / statistics.median(results["async"]) - 1
    print(f"record_usage cost: {usage_cost * 100:+.1f}% per step (target <= 10%)")
    floor = 1 / statistics.median(concurrent_raw)
    per_s = statistics.median(concurrent)
    print(f"concurrent: {args.concurrent} runs x {args.steps} steps started at once: {per_s:,.0f} steps/s")
    print(f"  single-commit floor (1 / raw commit, same rounds): {floor:,.0f} commits/s")
    print(verdict("async step / raw commit", statistics.median(results["async"]) / raw_s, 2.0))
    print(verdict("def step / raw commit", statistics.median(results["sync"]) / raw_s, 2.5))
    print(verdict("event log share of a step", share * 100, 20, unit="%"))
    print(verdict("concurrent steps/s / commit floor", per_s / floor, 1.0, at_most=False))


if __name__ == "__main__":
    main()
