"""A drip campaign in a real process, for the kill-while-sleeping test.

python drip_app.py DB LOG start   # start two runs, park them, then hang until killed
python drip_app.py DB LOG finish  # a new process: skip time and finish both runs
"""

from __future__ import annotations

import os
import sys
import threading
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

import plait
from plait.testing import FakeClock

DB, LOG, MODE = sys.argv[1], sys.argv[2], sys.argv[3]
START = datetime(2030, 1, 1, tzinfo=UTC)


class Upgrade(BaseModel):
    plan: str


def send(kind: str, to: str) -> None:
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{kind}:{to}\n".encode())
    finally:
        os.close(fd)


@plait.step
def welcome(email: str) -> str:
    send("welcome", email)
    return email


@plait.step
def tip(email: str) -> str:
    send("tip", email)
    return email


@plait.step
def thank(upgrade: Upgrade | None) -> str:
    send("thanks", upgrade.plan if upgrade else "?")
    return "upgraded"


@plait.step
def nudge(upgrade: Upgrade | None) -> str:
    send("nudge", "-")
    return "nudged"


drip = (
    plait.workflow("drip", input=str, output=str)
    .then(welcome)
    .sleep(timedelta(days=1))
    .then(tip)
    .sleep(timedelta(days=2))
    .wait_for_event("upgraded", schema=Upgrade, timeout=timedelta(days=7), default=None)
    .branch((lambda u: u is not None, thank), default=nudge)
    .commit()
)

if __name__ == "__main__":
    clock = FakeClock(START)
    with plait.Engine(f"sqlite:///{DB}", clock=clock) as engine:
        engine.register(drip)
        if MODE == "start":
            engine.start(drip, "ada@x", run_id="ada")
            engine.start(drip, "bob@x", run_id="bob")
            engine.run_until_idle()
            print("parked", flush=True)
            threading.Event().wait()
        clock.advance(days=1)
        engine.run_until_idle()
        clock.advance(days=2)
        engine.run_until_idle()
        engine.send_event("ada", "upgraded", {"plan": "pro"})
        print("ada", engine.get_run("ada").result(timeout=30), flush=True)
        clock.advance(days=7)
        print("bob", engine.get_run("bob").result(timeout=30), flush=True)
