"""Queues: limits on how many runs (or steps) run at once and start per period, across all workers.

The limits live in the database (``engine.register(queue)`` writes them), and
every claim checks them inside the claiming transaction, so they hold across
processes and machines, not per process.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from plait.clock import to_seconds
from plait.errors import WorkflowDefinitionError
from plait.ids import is_valid_id


@dataclass(frozen=True)
class Queue:
    """A named queue with optional limits, shared by the workflows and steps that name it.

    - ``concurrency``: at most this many runs (or steps, for a step's queue) at once.
    - ``rate_limit=(n, per)``: at most ``n`` starts in any window of ``per`` (seconds or timedelta).
    - ``key_concurrency``: at most this many runs at once per concurrency key (a workflow's
      ``concurrency_key=lambda input: input.customer_id``).
    - ``priority``: claim higher ``priority=`` runs first (FIFO within a priority); False: strictly FIFO.
    """

    name: str
    concurrency: int | None = None
    rate_limit: tuple[int, timedelta | float] | None = None
    key_concurrency: int | None = None
    priority: bool = True

    def __post_init__(self) -> None:
        if not is_valid_id(self.name):
            raise WorkflowDefinitionError(f"queue name {self.name!r} is not valid: use letters, digits, '_', '-', '.'")
        for label, value in (("concurrency", self.concurrency), ("key_concurrency", self.key_concurrency)):
            if value is not None and value < 1:
                raise WorkflowDefinitionError(f"queue '{self.name}': {label} must be at least 1")
        if self.rate_limit is not None:
            count, per = self.rate_limit
            if count < 1 or to_seconds(per) <= 0:
                raise WorkflowDefinitionError(f"queue '{self.name}': rate_limit is (count >= 1, period > 0)")

    @property
    def rate_count(self) -> int | None:
        return None if self.rate_limit is None else self.rate_limit[0]

    @property
    def rate_period(self) -> float | None:
        return None if self.rate_limit is None else to_seconds(self.rate_limit[1])

    @property
    def is_limited(self) -> bool:
        return any(v is not None for v in (self.concurrency, self.rate_limit, self.key_concurrency))

    @property
    def orders_claims(self) -> bool:
        """Whether only ``claim_runs`` may start its runs: it has limits, or its runs go strictly FIFO."""
        return self.is_limited or not self.priority


@dataclass(frozen=True)
class Candidate:
    """A claimable run as the claim query sees it."""

    id: str
    queue: str | None
    concurrency_key: str | None
    priority: int
    ready_at: float
    first_start: bool


# A claim reads its clock before it waits for a connection and the queue's lock, so it may commit
# after a claim stamped later, which already left some starts behind its own window. Starts are kept
# this long past their window so that the late claim still counts every start in its window: twice
# the longest a claim waits for a pooled PostgreSQL connection or SQLite's write lock (30 s).
LATE_CLAIM_SECONDS = 60.0


def rate_window(now: float, period: float) -> tuple[float, float]:
    """``(forget, count_after)``: starts at or before ``forget`` are deleted; those after ``count_after`` count."""
    return now - period - LATE_CLAIM_SECONDS, now - period


@dataclass(frozen=True)
class QueueLoad:
    """What a limited queue already uses: runs running, per key, and starts in its rate window (the oldest too)."""

    running: int
    running_by_key: dict[str, int]
    recent_starts: int
    oldest_start: float | None = None


def choose_claims(
    candidates: Iterable[Candidate], queues: dict[str, Queue], load: dict[str, QueueLoad], limit: int
) -> list[str]:
    """The ids to claim: in priority order, within every queue's limits. Pure, so both stores share it."""

    def order(c: Candidate) -> tuple[int, float, str]:
        queue = queues.get(c.queue or "")
        return (0 if queue is not None and not queue.priority else -c.priority, c.ready_at, c.id)

    running = {name: item.running for name, item in load.items()}
    by_key = {name: dict(item.running_by_key) for name, item in load.items()}
    starts = {name: item.recent_starts for name, item in load.items()}
    chosen: list[str] = []
    for candidate in sorted(candidates, key=order):
        if len(chosen) >= limit:
            break
        queue = queues.get(candidate.queue or "")
        if queue is not None:
            name = queue.name
            if queue.concurrency is not None and running.get(name, 0) >= queue.concurrency:
                continue
            key = candidate.concurrency_key
            keys = by_key.setdefault(name, {})
            if queue.key_concurrency is not None and key is not None and keys.get(key, 0) >= queue.key_concurrency:
                continue
            if candidate.first_start and queue.rate_count is not None and starts.get(name, 0) >= queue.rate_count:
                continue
            running[name] = running.get(name, 0) + 1
            if key is not None:
                keys[key] = keys.get(key, 0) + 1
            if candidate.first_start:
                starts[name] = starts.get(name, 0) + 1
        chosen.append(candidate.id)
    return chosen


def queue_row(queue: Queue) -> tuple[str, int | None, int | None, float | None, int | None, bool]:
    """A queue as stored: name, concurrency, rate_count, rate_period, key_concurrency, priority."""
    return (queue.name, queue.concurrency, queue.rate_count, queue.rate_period, queue.key_concurrency, queue.priority)


def queue_from_row(row: tuple[object, ...]) -> Queue:
    name, concurrency, rate_count, rate_period, key_concurrency, priority = row
    rate = None if rate_count is None else (int(str(rate_count)), float(str(rate_period)))
    return Queue(
        name=str(name),
        concurrency=None if concurrency is None else int(str(concurrency)),
        rate_limit=rate,
        key_concurrency=None if key_concurrency is None else int(str(key_concurrency)),
        priority=bool(priority),
    )


def queue_name(queue: Queue | str | None) -> str | None:
    """The name a queue is stored under, from a Queue or a plain name."""
    if isinstance(queue, Queue):
        return queue.name
    if queue is not None and not is_valid_id(queue):
        raise WorkflowDefinitionError(f"queue name {queue!r} is not valid: use letters, digits, '_', '-', '.'")
    return queue


def concurrency_key_of(workflow: Any, value: Any) -> str | None:
    """The run's concurrency key from its workflow's ``concurrency_key`` function (None without one)."""
    key_fn = workflow.placement.concurrency_key
    if key_fn is None:
        return None
    try:
        key = key_fn(value)
    except Exception as exc:
        raise WorkflowDefinitionError(
            f"workflow '{workflow.id}': concurrency_key failed on the input ({type(exc).__name__}: {exc})"
        ) from exc
    return None if key is None else str(key)
