"""What steps and workflows use to wait durably: polls, approvals and suspensions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from plait.clock import to_seconds

S = TypeVar("S")
T = TypeVar("T")


@dataclass(frozen=True)
class Poll(Generic[S]):
    """Returned by a step (or its ``check``) to say "not done yet: check again later".

    The engine stores ``state`` and calls the step's ``check(state)`` every
    ``every`` until it returns the output, raises, or ``max_wait`` passes. No
    worker is held in between: each check is a short transaction.
    """

    state: S
    every: timedelta | float = 60.0
    max_wait: timedelta | float | None = None

    @property
    def every_seconds(self) -> float:
        return max(0.0, to_seconds(self.every))

    @property
    def max_wait_seconds(self) -> float | None:
        return None if self.max_wait is None else to_seconds(self.max_wait)


class Approval(BaseModel, Generic[T]):
    """The decision an approval step waits for: ``approved`` with ``data``, or rejected with ``reason``."""

    approved: bool
    data: T | None = None
    reason: str | None = None


@dataclass
class SuspendRequest(BaseException):
    """Internal: raised by ``ctx.suspend``; parks the run until ``resume``.

    A BaseException so that a step's ``except Exception`` cannot swallow it.
    """

    payload: Any = field(default=None)


class SkipRequest(BaseException):
    """Internal: raised by a step at attempt start to be recorded ``skipped`` with a null output.

    Document blocks whose ``when`` fails, or that are disabled, raise it. A
    BaseException so that a step's ``except Exception`` cannot swallow it.
    """


def approval_event(step_id: str) -> str:
    """The inbox name an approval step waits on."""
    return f"approval:{step_id}"


def resume_event(step_key: str) -> str:
    """The inbox name a suspended step waits on."""
    return f"resume:{step_key}"
