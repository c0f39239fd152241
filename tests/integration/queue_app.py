"""Workflows with queue limits, run by real worker processes in the queue tests.

    python queue_app.py URL LEDGER

Each step appends ``<label> <start> <end> <pid>`` (wall-clock seconds) to LEDGER.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from pydantic import BaseModel

import plait

LEDGER = ""


class Order(BaseModel):
    customer: str
    n: int


def record(label: str, started: float) -> None:
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{label} {started:.6f} {time.time():.6f} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def busy(label: str, seconds: float) -> None:
    started = time.time()
    time.sleep(seconds)  # the step's own work, so that runs overlap in time
    record(label, started)


@plait.step
def hold_a_slot(n: int) -> int:
    busy("limited", 0.3)
    return n


@plait.step
def tick(n: int) -> int:
    busy("rated", 0.0)
    return n


@plait.step
def serve(order: Order) -> int:
    busy(f"customer:{order.customer}", 0.2)
    return order.n


@plait.step(queue=plait.Queue("two_at_a_time", concurrency=2))
def scarce(n: int) -> int:
    busy("scarce", 0.2)
    return n


limited = plait.workflow("limited", input=int, queue=plait.Queue("three", concurrency=3)).then(hold_a_slot).commit()
rated = plait.workflow("rated", input=int, queue=plait.Queue("ten_per_second", rate_limit=(10, 1.0))).then(tick)
per_customer = plait.workflow(
    "per_customer",
    input=Order,
    queue=plait.Queue("customers", key_concurrency=1),
    concurrency_key=lambda order: order.customer,
).then(serve)
step_limited = plait.workflow("step_limited", input=int).then(scarce).commit()
ALL: list[plait.Workflow[Any, Any]] = [limited, rated.commit(), per_customer.commit(), step_limited]

if __name__ == "__main__":
    LEDGER = sys.argv[2]
    engine = plait.Engine(sys.argv[1], poll_interval=0.02)
    engine.register(*ALL)
    print("ready", flush=True)
    engine.work(concurrency=2, grace=5)  # fewer than any limit: the limits must hold across processes
