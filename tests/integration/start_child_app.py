"""A parent whose step starts a child run, for the start_child crash test, run as a real process.

    python start_child_app.py DB_URL LOG MODE RUN_ID

The step logs "started <child id>" (fsynced) right after ``ctx.start_child``
returns. MODE "hang" then blocks before the step can commit (the test
SIGKILLs the process there); "run" lets it finish and prints the result.
"""

from __future__ import annotations

import os
import sys
import threading

import plait

URL, LOG, MODE, RUN_ID = sys.argv[1:5]


@plait.step
def greet(name: str) -> str:
    return f"hello {name}"


child_flow = plait.workflow("greeting_child", input=str).then(greet).commit()


@plait.step
def spawn(ctx: plait.Context, name: str) -> str:
    child = ctx.start_child(child_flow, name)
    with open(LOG, "a") as log:
        log.write(f"started {child.id}\n")
        log.flush()
        os.fsync(log.fileno())
    if MODE == "hang":
        threading.Event().wait()
    return child.id


parent_flow = plait.workflow("spawner", input=str).then(spawn).commit()

if __name__ == "__main__":
    with plait.Engine(URL, worker=MODE == "run") as engine:
        engine.register(parent_flow, child_flow)
        handle = engine.start(parent_flow, "ana", run_id=RUN_ID)
        if MODE == "hang":
            engine.work()
        print(handle.result(timeout=60), flush=True)
