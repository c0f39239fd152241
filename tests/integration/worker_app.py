"""A worker process for multi-process tests: ``python worker_app.py DB LOG``; stops on SIGTERM."""

from __future__ import annotations

import os
import sys

import plait

DB, LOG = (sys.argv[1], sys.argv[2]) if len(sys.argv) > 2 else ("", "")


def record(name: str) -> None:
    line = f"{name}\n".encode()
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)  # one O_APPEND write per line: lines from processes never interleave
    finally:
        os.close(fd)


def make_step(index: int) -> plait.Step[int, int]:
    def body(ctx: plait.Context, value: int) -> int:
        record(ctx.idempotency_key)
        return value + 1

    body.__name__ = f"p{index}"
    return plait.step(body)


builder = plait.workflow("shared", input=int)
for i in range(5):
    builder = builder.then(make_step(i))
shared = builder.commit()

if __name__ == "__main__":
    engine = plait.Engine(f"sqlite:///{DB}", poll_interval=0.02)
    engine.register(shared)
    print("ready", flush=True)
    engine.work()
