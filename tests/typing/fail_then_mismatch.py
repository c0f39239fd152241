"""Must fail: a step whose input does not accept the previous step's output."""

from __future__ import annotations

import plait


@plait.step
def to_text(value: int) -> str:
    return str(value)


@plait.step
def double(value: int) -> int:
    return value * 2


broken = plait.workflow("broken", input=int).then(to_text).then(double)  # error: arg-type
