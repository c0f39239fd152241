"""Memory of a worker holding many sleeping runs: they must cost rows, not memory.

    python bench/sleepers.py [--runs 10000]

Measures this process's resident memory (RSS) with the worker idle and no runs
(the baseline), after parking runs/10 sleeping runs, and after parking all of
them; prints each and the growth per 1,000 sleepers.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import plait


@plait.step
def after_nap(x: int) -> int:
    return x


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def park(engine: plait.Engine, flow: plait.Workflow[int, int], count: int, offset: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        engine.start(flow, offset + i)
    engine.run_until_idle(timeout=600)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    args = parser.parse_args()
    flow = plait.workflow("sleeper", input=int).sleep(timedelta(days=1)).then(after_nap).commit()
    with tempfile.TemporaryDirectory() as tmp, plait.Engine(f"sqlite:///{Path(tmp) / 's.db'}") as engine:
        engine.register(flow)
        engine.run_until_idle()
        gc.collect()
        baseline = rss_mib()
        first = args.runs // 10
        seconds_first = park(engine, flow, first, 0)
        gc.collect()
        after_first = rss_mib()
        seconds_rest = park(engine, flow, args.runs - first, first)
        gc.collect()
        after_all = rss_mib()
        waiting = len(engine.list_runs(status="waiting", limit=1000).items)
    print(f"sleeping runs parked: {args.runs} (first page of waiting runs: {waiting})")
    print(f"{'state':32} {'RSS MiB':>8}")
    print(f"{'idle worker, no runs (baseline)':32} {baseline:8.1f}")
    print(f"{f'{first} sleeping runs':32} {after_first:8.1f}")
    print(f"{f'{args.runs} sleeping runs':32} {after_all:8.1f}")
    growth = (after_all - after_first) / ((args.runs - first) / 1000)
    print(f"growth per 1,000 more sleepers: {growth:.2f} MiB (ratio all/baseline {after_all / baseline:.2f})")
    print(f"start+park rate: {args.runs / (seconds_first + seconds_rest):,.0f} runs/s")


if __name__ == "__main__":
    main()
