"""What the run page computes from a run's records: which step runs now, and the waits on the timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import plait
from plait.dashboard import views
from plait.runs import Event, Run, RunStatus

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def a_run(status: RunStatus) -> Run:
    return Run(
        id="r1",
        workflow_id="flow",
        workflow_version="v1",
        status=status,
        input=None,
        output=None,
        error=None,
        idempotency_key=None,
        priority=0,
        metadata=None,
        parent_run_id=None,
        status_message=None,
        wait=None,
        created_at=T0,
        started_at=T0,
        finished_at=None,
    )


def an_event(seq: int, type_: str, step: str | None = None, payload: Any = None, attempt: int = 1) -> Event:
    return Event(
        id=seq,
        run_id="r1",
        workflow_id="flow",
        seq=seq,
        type=type_,
        step_id=step,
        step_key=step,
        attempt=attempt if step else None,
        payload=payload,
        created_at=T0 + timedelta(seconds=seq),
    )


def _step(name: str) -> plait.Step[int, int]:
    return plait.create_step(id=name, input=int, output=int, execute=lambda ctx, x: x)


PLAN = plait.workflow("flow", input=int).then(_step("a")).then(_step("b")).commit().to_dict()


def test_the_running_step_is_the_one_whose_step_started_has_no_outcome() -> None:
    # Neither step has a record yet; "b" said it started (say "a" is skipped by a condition not yet written).
    events = [an_event(1, "run.started"), an_event(2, "step.started", "b")]
    assert views.step_statuses(a_run(RunStatus.RUNNING), [], PLAN, events) == {"b": "running"}
    ended = [*events, an_event(3, "step.retrying", "b"), an_event(4, "step.started", "b", attempt=2)]
    assert views.step_statuses(a_run(RunStatus.RUNNING), [], PLAN, ended) == {"b": "running"}
    # Without any step.started (a silent step writes its start with its commit) the first node not done runs.
    assert views.step_statuses(a_run(RunStatus.RUNNING), [], PLAN, events[:1]) == {"a": "running"}


def test_waits_become_timeline_bars_until_the_run_resumes() -> None:
    events = [
        an_event(1, "run.started"),
        an_event(2, "run.waiting", payload={"kind": "event", "step_id": "wait_go", "event": "go"}),
        an_event(5, "run.resumed", payload={"after": {"kind": "event"}}),
        an_event(6, "run.waiting", payload={"kind": "approval", "step_id": "review"}),
    ]
    run = a_run(RunStatus.WAITING)
    bars, height = views.timeline(run, [], events, T0 + timedelta(seconds=10))
    assert [(b.kind, b.status, b.label) for b in bars] == [
        ("wait", "waited", "event: wait_go"),
        ("wait", "waiting", "approval: review"),
    ]
    assert bars[0].title == "event: wait_go (go): waited, 3.0 s"
    assert bars[0].x == 200.0 and bars[0].w == 300.0  # 2 s to 5 s of a 10 s span
    assert height == 44
