"""A 5-step workflow for crash tests, run as a real process by the tests.

    python crash_app.py DB LOG MODE RUN_ID...

Every step appends its name to LOG (fsynced) so the test can count how often
each one ran. MODE "block_inside" makes step s3 hang after its side effect,
"block_before" makes it hang before; "run" executes normally.
"""

from __future__ import annotations

import os
import sys
import threading

import plait

DB, LOG, MODE = sys.argv[1], sys.argv[2], sys.argv[3]


def record(name: str) -> None:
    with open(LOG, "a") as log:
        log.write(f"{name}\n")
        log.flush()
        os.fsync(log.fileno())


def make_step(name: str) -> plait.Step[int, int]:
    def body(value: int) -> int:
        if name == "s3" and MODE == "block_before":
            threading.Event().wait()
        record(name)
        if name == "s3" and MODE == "block_inside":
            threading.Event().wait()
        return value + 1

    body.__name__ = name
    return plait.step(body)


builder = plait.workflow("five", input=int)
for step_name in ("s1", "s2", "s3", "s4", "s5"):
    builder = builder.then(make_step(step_name))
five = builder.commit()

if __name__ == "__main__":
    with plait.Engine(f"sqlite:///{DB}") as engine:
        engine.register(five)
        handles = [engine.start(five, 0, run_id=run_id) for run_id in sys.argv[4:]]
        print("started", flush=True)
        for handle in handles:
            print(handle.id, handle.result(timeout=60), flush=True)
