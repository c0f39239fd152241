"""A workflow whose step records a model call, then hangs until killed (MODE "block") or finishes ("run").

python usage_crash_app.py DB_URL LOG MODE RUN_ID
"""

from __future__ import annotations

import os
import sys
import threading

import plait

URL, LOG, MODE = sys.argv[1], sys.argv[2], sys.argv[3]


def note(line: str) -> None:
    with open(LOG, "a") as log:
        log.write(f"{line}\n")
        log.flush()
        os.fsync(log.fileno())


@plait.step
def prepare(value: int) -> int:
    return value + 1


@plait.step
def ask_model(ctx: plait.Context, value: int) -> int:
    ctx.record_usage(model="gpt-4o", input_tokens=1000, output_tokens=100, provider="openai")
    ctx.log.info("called the model")  # flushed with the usage event while the step keeps running
    note(f"recorded {ctx.attempt}")
    if MODE == "block":
        threading.Event().wait()
    return value + 1


flow = (
    plait.workflow("usage_crash", input=int)
    .then(prepare)
    .then(ask_model)
    .then(prepare.with_options(id="done"))
    .commit()
)

if __name__ == "__main__":
    with plait.Engine(URL) as engine:
        engine.register(flow)
        handle = engine.start(flow, 0, run_id=sys.argv[4])
        print(handle.result(timeout=60), flush=True)
