"""Must fail: foreach over a value that is not a list, and a loop step that changes the type."""

from __future__ import annotations

import plait


@plait.step
def length(word: str) -> int:
    return len(word)


@plait.step
def to_text(value: int) -> str:
    return str(value)


each = plait.workflow("each", input=str).foreach(length)  # error: misc
looped = plait.workflow("loop", input=int).dowhile(to_text, lambda x: x == "1")  # error: arg-type
