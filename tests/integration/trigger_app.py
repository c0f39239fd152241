"""A worker process that registers workflows but never declares a completion trigger.

    python trigger_app.py URL

Runs ``engine.work()`` on URL until SIGTERM; the ``billing -> thanks`` trigger
it fires was declared by another process and read from the database.
"""

from __future__ import annotations

import sys

import plait


@plait.step
def invoice(order: int) -> int:
    return order * 100


@plait.step
def thank(amount: int) -> str:
    return f"thanks for {amount}"


billing = plait.workflow("billing", input=int).then(invoice).commit()
thanks = plait.workflow("thanks", input=int).then(thank).commit()

if __name__ == "__main__":
    engine = plait.Engine(sys.argv[1], poll_interval=0.05)
    engine.register(billing, thanks)
    print("ready", flush=True)
    engine.work()
