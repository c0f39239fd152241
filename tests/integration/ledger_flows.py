"""A three-step workflow whose steps append a line to a ledger file: a side effect that shows a step run twice.

The ledger is the file named by ``PLAIT_TEST_LEDGER``. ``first_step_started``
is set when the first step begins, so a script can leave its engine while that step runs.
"""

from __future__ import annotations

import os
import threading

import plait

first_step_started = threading.Event()
# How long the first step works after it started: the script closes its engine meanwhile.
FIRST_STEP_SECONDS = 0.5


def append(line: str) -> None:
    fd = os.open(os.environ["PLAIT_TEST_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


@plait.step
def one(ctx: plait.Context, n: int) -> int:
    first_step_started.set()
    threading.Event().wait(FIRST_STEP_SECONDS)  # the step's own work, still going when the script leaves
    append(f"one {ctx.run_id}")
    return n + 1


@plait.step
def two(ctx: plait.Context, n: int) -> int:
    append(f"two {ctx.run_id}")
    return n + 1


@plait.step
def three(ctx: plait.Context, n: int) -> int:
    append(f"three {ctx.run_id}")
    return n + 1


ledgered = plait.workflow("ledgered", input=int, output=int).then(one).then(two).then(three).commit()
