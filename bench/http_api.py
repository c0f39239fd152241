"""Start-a-run over HTTP: requests per second and POST latency, from a second process on loopback.

    python bench/http_api.py [--requests 500] [--threads 4]

(Not bench/http.py: a script of that name would shadow the standard library's
``http`` package for every other script in this folder.)

Starts ``plait server`` (API + in-process worker, SQLite) in a subprocess, then
sends keep-alive requests from this process. The baseline is a GET of
/api/workflows on the same server (an HTTP round trip with no database write),
measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

APP = """
import plait

@plait.step
async def noop(x: int) -> int:
    return x + 1

flow = plait.workflow("bench_http", input=int).then(noop).commit()
engine = plait.Engine("sqlite:///bench.db")
engine.register(flow)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def timed(client: httpx.Client, method: str, path: str, count: int, body: object = None) -> list[float]:
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        response = client.request(method, path, json={"input": i} if body is not None else None)
        response.raise_for_status()
        latencies.append(time.perf_counter() - started)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "benchapp.py").write_text(APP)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "plait.cli", "server", "--app", "benchapp:engine", "--port", str(port)],
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": tmp},
        )
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=30) as client:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        client.get("/api/workflows").raise_for_status()
                        break
                    except httpx.HTTPError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
                timed(client, "POST", "/api/workflows/bench_http/runs", 20, body=True)  # warm up
                baseline = timed(client, "GET", "/api/workflows", args.requests)
                starts = timed(client, "POST", "/api/workflows/bench_http/runs", args.requests, body=True)
            per_thread = args.requests // args.threads
            errors: list[BaseException] = []

            def hammer() -> None:
                try:
                    with httpx.Client(base_url=base, timeout=30) as own:
                        timed(own, "POST", "/api/workflows/bench_http/runs", per_thread, body=True)
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=hammer) for _ in range(args.threads)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            concurrent_rps = per_thread * args.threads / (time.perf_counter() - started)
            if errors:
                raise errors[0]
        finally:
            server.terminate()
            server.communicate(timeout=30)
    print(f"machine: {os.cpu_count()} cores; plait server (API + in-process worker) on SQLite, loopback")
    print(f"{'figure':44} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for label, values in (("GET /api/workflows (baseline)", baseline), ("POST start a run -> 201", starts)):
        rps = len(values) / sum(values)
        print(f"{label:44} {percentile(values, 0.5) * 1e3:8.2f} {percentile(values, 0.99) * 1e3:8.2f} {rps:8.0f}")
    print(f"{'POST start, ' + str(args.threads) + ' keep-alive clients':44} {'':8} {'':8} {concurrent_rps:8.0f}")
    print(f"start p50 / baseline p50: {statistics.median(starts) / statistics.median(baseline):.2f}x")


if __name__ == "__main__":
    main()
