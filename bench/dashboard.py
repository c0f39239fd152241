"""Dashboard page render times with many runs in SQLite: the runs page, a filtered page, and a 200-step run.

    python bench/dashboard.py [--runs 100000] [--requests 50]

Runs a few real runs (a 200-step one, some that succeed and some that fail),
then copies finished run rows in bulk until the table holds ``--runs`` runs
(seeding 100,000 runs one transaction at a time would take minutes and
measure nothing the dashboard does). Pages are fetched over real HTTP from a
uvicorn server on 127.0.0.1; times include the round trip.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sqlite3
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import uvicorn

import plait
from plait.http import create_app


@plait.step
async def add(x: int) -> int:
    return x + 1


@plait.step
async def check(x: int) -> int:
    if x % 2:
        raise ValueError(f"odd input {x}")
    return x


long_flow = plait.workflow("long", input=int)
for i in range(200):
    long_flow = long_flow.then(plait.create_step(id=f"s{i:03}", input=int, output=int, execute=lambda ctx, x: x + 1))
long = long_flow.commit()
short = plait.workflow("short", input=int).then(add).then(check).commit()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def seed(path: Path, total: int) -> None:
    """Copy the finished runs already there until ``plait_runs`` holds ``total`` rows, newest last."""
    with sqlite3.connect(path) as conn:
        names = [row[1] for row in conn.execute("PRAGMA table_info(plait_runs)")]
        templates = conn.execute(
            f"SELECT {', '.join(names)} FROM plait_runs WHERE status IN ('succeeded', 'failed')"
        ).fetchall()
        have = conn.execute("SELECT count(*) FROM plait_runs").fetchone()[0]
        at = {name: i for i, name in enumerate(names)}
        base = time.time() - total
        rows = []
        for n in range(max(0, total - have)):
            row = list(templates[n % len(templates)])
            row[at["id"]] = uuid.uuid4().hex[:28]
            row[at["idempotency_key"]] = f"seed-{n}"
            row[at["created_at"]] = base + n * 0.5
            rows.append(row)
        marks = ", ".join("?" for _ in names)
        conn.executemany(f"INSERT INTO plait_runs ({', '.join(names)}) VALUES ({marks})", rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "dashboard.db"
        with plait.Engine(f"sqlite:///{db}") as engine:
            engine.register(long, short)
            long_run = engine.start(long, 0)
            long_run.result(120)
            for i in range(20):
                with contextlib.suppress(plait.RunFailed):
                    engine.start(short, i).result(30)
        started = time.perf_counter()
        seed(db, args.runs)
        print(f"seeded {args.runs} runs in {time.perf_counter() - started:.1f} s")
        with plait.Engine(f"sqlite:///{db}", worker=False) as engine:
            engine.register(long, short)
            port = free_port()
            server = uvicorn.Server(uvicorn.Config(create_app(engine), port=port, log_level="error"))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            while not server.started:
                time.sleep(0.01)  # the server thread starting up
            pages = {
                "runs page (first)": "/",
                "runs page (workflow + status filter)": "/?workflow=short&status=failed",
                "runs page (search by idempotency key)": "/?q=seed-5000",
                "runs page (started before a time)": "/?before=2001-01-01T00:00",
                "runs page (text search, reads 1000 runs)": "/?text=no-such-text",
                f"run page ({len(long.nodes)} steps)": f"/runs/{long_run.id}",
                "one step's details (opened on that page)": f"/runs/{long_run.id}/steps/s100",
            }
            print(f"{'page':44} {'p50 ms':>8} {'p99 ms':>8} {'KB':>6}")
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                for label, path in pages.items():
                    times, size = [], 0
                    for _ in range(args.requests):
                        begun = time.perf_counter()
                        response = client.get(path)
                        response.raise_for_status()
                        times.append(time.perf_counter() - begun)
                        size = len(response.content)
                    p50, p99 = percentile(times, 0.5) * 1e3, percentile(times, 0.99) * 1e3
                    print(f"{label:44} {p50:8.1f} {p99:8.1f} {size / 1024:6.0f}")
            server.should_exit = True
            thread.join(timeout=10)


if __name__ == "__main__":
    main()
