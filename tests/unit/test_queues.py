"""Choosing which runs to claim within queue limits. Pure logic."""

from __future__ import annotations

import pytest

import plait
from plait.queues import Candidate, QueueLoad, choose_claims


def candidate(run_id: str, queue: str | None = "q", key: str | None = None, priority: int = 0) -> Candidate:
    return Candidate(run_id, queue, key, priority, ready_at=float(run_id[-1]), first_start=True)


def test_concurrency_counts_what_already_runs() -> None:
    queues = {"q": plait.Queue("q", concurrency=3)}
    load = {"q": QueueLoad(running=2, running_by_key={}, recent_starts=0)}
    assert choose_claims([candidate("r1"), candidate("r2")], queues, load, limit=10) == ["r1"]


def test_key_concurrency_and_unqueued_runs() -> None:
    queues = {"q": plait.Queue("q", key_concurrency=1)}
    runs = [candidate("r1", key="a"), candidate("r2", key="a"), candidate("r3", key="b"), candidate("r4", None)]
    assert choose_claims(runs, queues, {}, limit=10) == ["r1", "r3", "r4"]


def test_rate_limit_counts_recent_starts_and_priority_orders() -> None:
    queues = {"q": plait.Queue("q", rate_limit=(2, 1.0))}
    load = {"q": QueueLoad(running=0, running_by_key={}, recent_starts=1)}
    runs = [candidate("r1", priority=0), candidate("r2", priority=5)]
    assert choose_claims(runs, queues, load, limit=10) == ["r2"]
    fifo = {"q": plait.Queue("q", priority=False)}
    assert choose_claims(runs, fifo, {}, limit=10) == ["r1", "r2"]


def test_bad_queue_definitions_are_rejected() -> None:
    with pytest.raises(plait.WorkflowDefinitionError):
        plait.Queue("q", concurrency=0)
    with pytest.raises(plait.WorkflowDefinitionError):
        plait.Queue("q", rate_limit=(0, 1.0))
    with pytest.raises(plait.WorkflowDefinitionError):
        plait.Queue("bad name")
