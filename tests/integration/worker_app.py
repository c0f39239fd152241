"""A worker process for multi-process tests.

    python worker_app.py URL LEDGER [STEP_SECONDS] [LEASE_SECONDS]

Runs ``engine.work()`` on URL until SIGTERM. Each step of the 5-step
``shared`` workflow appends ``<idempotency key> <pid>`` to the LEDGER file
(one O_APPEND write per line, so lines from processes never interleave),
then sleeps STEP_SECONDS.
"""

from __future__ import annotations

import os
import sys
import time

import plait

LEDGER = ""
STEP_SECONDS = 0.0


def record(key: str) -> None:
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{key} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def make_step(index: int) -> plait.Step[int, int]:
    def body(ctx: plait.Context, value: int) -> int:
        record(ctx.idempotency_key)
        if STEP_SECONDS:
            time.sleep(STEP_SECONDS)  # the step's own work, so that kills and pauses land inside steps
        return value + 1

    body.__name__ = f"p{index}"
    return plait.step(body)


builder = plait.workflow("shared", input=int)
for i in range(5):
    builder = builder.then(make_step(i))
shared = builder.commit()

if __name__ == "__main__":
    url, LEDGER = sys.argv[1], sys.argv[2]
    STEP_SECONDS = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    lease_seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 30.0
    engine = plait.Engine(url, poll_interval=0.02, lease_seconds=lease_seconds)
    engine.register(shared)
    print("ready", flush=True)
    engine.work(concurrency=16, grace=5)
