"""Must fail: using run.result() as a type the workflow does not return."""

from __future__ import annotations

import plait


@plait.step
def to_text(value: int) -> str:
    return str(value)


flow = plait.workflow("text", input=int).then(to_text).commit()


def use(engine: plait.Engine) -> int:
    number: int = engine.start(flow, 1).result()  # error: assignment
    return number
