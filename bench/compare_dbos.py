"""plait next to DBOS on the same workloads, in one invocation, with the same durability.

    python bench/compare_dbos.py [--runs 50] [--steps 10] [--queued 200] [--fanouts 50] [--postgres]

Needs ``dbos`` installed next to plait (see bench/README.md); this script installs nothing.
Workloads: (a) sequential: runs of K no-op steps one after another; (b) queued: runs of 5 steps
enqueued at once and processed concurrently; (c) fan-out: runs of a 10-way parallel step group.
SQLite for both uses WAL with synchronous=FULL (the DBOS file is switched to WAL before DBOS
opens it; WAL's default synchronous in SQLite is FULL). With ``--postgres`` (and
PLAIT_TEST_POSTGRES_URL set) both also run on PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

try:
    from dbos import DBOS
except ImportError:
    print(
        "compare_dbos: the 'dbos' package is not installed in this environment.\n"
        "Create a separate one as bench/README.md says:\n"
        "  python -m venv .venv-bench && .venv-bench/bin/pip install -e '.[postgres]' dbos\n"
        "  .venv-bench/bin/python bench/compare_dbos.py",
        file=sys.stderr,
    )
    raise SystemExit(2) from None

import plait

TARGET_RATIO = 5.0  # plait aims at 5x DBOS or more on every workload, at the same durability

# -- plait ------------------------------------------------------------------------------------


@plait.step
async def p_noop(x: int) -> int:
    return x + 1


def plait_chain(steps: int) -> plait.Workflow[int, int]:
    builder = plait.workflow(f"chain{steps}", input=int)
    for i in range(steps):
        builder = builder.then(p_noop.with_options(id=f"s{i}"))
    return builder.commit()


plait_fanout = plait.workflow("fanout", input=int).parallel(*[p_noop.with_options(id=f"f{i}") for i in range(10)])


def time_plait(url: str, args: argparse.Namespace) -> dict[str, float]:
    sequential, queued, fanout = plait_chain(args.steps), plait_chain(5), plait_fanout.commit()
    results: dict[str, float] = {}
    with plait.Engine(url) as engine:
        engine.start(sequential, 0).result(timeout=60)
        started = time.perf_counter()
        for i in range(args.runs):
            engine.start(sequential, i).result(timeout=60)
        results["sequential steps/s"] = args.runs * args.steps / (time.perf_counter() - started)
        started = time.perf_counter()
        handles = [engine.start(queued, i) for i in range(args.queued)]
        for handle in handles:
            handle.result(timeout=300)
        results["queued runs/s"] = args.queued / (time.perf_counter() - started)
        started = time.perf_counter()
        for i in range(args.fanouts):
            engine.start(fanout, i).result(timeout=60)
        results["fan-out runs/s"] = args.fanouts / (time.perf_counter() - started)
    return results


# -- DBOS -------------------------------------------------------------------------------------


@DBOS.step()
def d_noop(x: int) -> int:
    return x + 1


@DBOS.step()
async def d_anoop(x: int) -> int:
    return x + 1


@DBOS.workflow()
def d_chain(x: int, steps: int) -> int:
    for _ in range(steps):
        x = d_noop(x)
    return x


@DBOS.workflow()
async def d_fanout(x: int) -> list[int]:
    return list(await asyncio.gather(*[d_anoop(x) for _ in range(10)]))


def time_dbos(url: str, args: argparse.Namespace) -> dict[str, float]:
    DBOS(config={"name": "plait-bench", "system_database_url": url})
    DBOS.launch()
    queue = DBOS.register_queue("bench_queue")
    results: dict[str, float] = {}
    try:
        d_chain(0, args.steps)
        started = time.perf_counter()
        for i in range(args.runs):
            d_chain(i, args.steps)
        results["sequential steps/s"] = args.runs * args.steps / (time.perf_counter() - started)
        started = time.perf_counter()
        handles = [queue.enqueue(d_chain, i, 5) for i in range(args.queued)]
        for handle in handles:
            handle.get_result()
        results["queued runs/s"] = args.queued / (time.perf_counter() - started)
        started = time.perf_counter()
        for i in range(args.fanouts):
            asyncio.run(d_fanout(i))
        results["fan-out runs/s"] = args.fanouts / (time.perf_counter() - started)
    finally:
        DBOS.destroy(destroy_registry=False)
    return results


def report(backend: str, ours: dict[str, float], theirs: dict[str, float]) -> None:
    print(f"\n{backend}")
    print(f"{'workload':22} {'plait':>10} {'DBOS':>10} {'plait/DBOS':>11}")
    for name, value in ours.items():
        print(f"{name:22} {value:10.1f} {theirs[name]:10.1f} {value / theirs[name]:10.2f}x")
    for name, value in ours.items():
        ratio = value / theirs[name]
        verdict = "met" if ratio >= TARGET_RATIO else "missed"
        print(f"target {backend.split()[0]} {name} plait/DBOS: {ratio:.2f}x (needs >= {TARGET_RATIO:g}x) {verdict}")


def sqlite_pair(tmp: Path) -> tuple[str, str]:
    dbos_file = tmp / "dbos.sqlite"
    with sqlite3.connect(dbos_file) as conn:  # WAL is a property of the file: DBOS then opens it in WAL
        conn.execute("PRAGMA journal_mode=WAL")
    return f"sqlite:///{tmp / 'plait.db'}", f"sqlite:///{dbos_file}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--queued", type=int, default=200)
    parser.add_argument("--fanouts", type=int, default=50)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; plait {plait.__version__}; workloads: {vars(args)}")
    with tempfile.TemporaryDirectory() as tmp:
        plait_url, dbos_url = sqlite_pair(Path(tmp))
        report("SQLite (WAL, synchronous=FULL)", time_plait(plait_url, args), time_dbos(dbos_url, args))
    base = os.environ.get("PLAIT_TEST_POSTGRES_URL")
    if args.postgres and base:
        schema = f"plait_cmp_{uuid.uuid4().hex[:8]}"
        database = f"dbos_cmp_{uuid.uuid4().hex[:8]}"
        dbos_pg = base.rsplit("/", 1)[0] + f"/{database}"
        import psycopg

        try:
            ours = time_plait(f"{base}?schema={schema}", args)
            theirs = time_dbos(dbos_pg, args)
        finally:
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        report("PostgreSQL", ours, theirs)


if __name__ == "__main__":
    main()
