"""Volume, version pinning and lease takeover on a real SQLite file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import plait
from tests.conftest import run_sql


@plait.step
def add_one(x: int) -> int:
    return x + 1


def chain(workflow_id: str, steps: int, version: str | None = None) -> plait.Workflow[int, int]:
    builder = plait.workflow(workflow_id, input=int, version=version)
    for i in range(steps):
        builder = builder.then(add_one.with_options(id=f"add_{i}"))
    return builder.commit()


@pytest.mark.timeout(300)
def test_a_thousand_runs_of_ten_steps_all_complete_correctly(engine: plait.Engine) -> None:
    flow = chain("ten", 10)
    runs = [engine.start(flow, i) for i in range(1000)]
    results = [run.result(timeout=120) for run in runs]
    assert results == [i + 10 for i in range(1000)]
    assert engine.list_runs(status="succeeded", limit=1000).next_cursor is None
    assert len(engine.list_runs(status="succeeded", limit=1000).items) == 1000
    sample = runs[537].steps()
    assert [s.output for s in sample] == list(range(538, 548))


def test_run_is_pinned_to_its_version_and_says_which_it_needs(db_url: str) -> None:
    v1 = chain("pinned", 2, version="v1")
    v2 = chain("pinned", 3, version="v2")
    with plait.Engine(db_url, worker=False) as client:
        old_run = client.start(v1, 0)
    with plait.Engine(db_url, poll_interval=0.01) as new_worker:
        new_worker.register(v2)
        new_run = new_worker.start(v2, 0)
        assert new_run.result(timeout=10) == 3
        waiting = _wait_for_waiting(new_worker)
        assert [r.id for r in waiting] == [old_run.id]
        assert waiting[0].status_message is not None
        assert "'pinned' version 'v1'" in waiting[0].status_message
    with plait.Engine(db_url) as old_worker:
        old_worker.register(v1)
        assert old_worker.get_run(old_run.id).result(timeout=10) == 2
        assert old_worker.list_runs(waiting_for_version=True).items == []


def _wait_for_waiting(engine: plait.Engine) -> list[plait.Run]:
    for _ in range(250):
        items = engine.list_runs(waiting_for_version=True).items
        if items:
            return items
        time.sleep(0.02)  # polling for the worker's idle scan to mark the run, not waiting on a timer
    return []


def test_expired_lease_of_another_host_is_taken_over(db_url: str, tmp_path: Path) -> None:
    flow = chain("orphan", 3)
    with plait.Engine(db_url, worker=False) as client:
        run = client.start(flow, 0)
    run_sql(
        db_url,
        "UPDATE plait_runs SET status = 'running', owner = 'elsewhere:1:1', lease_expires_at = 0, "
        "lease_token = 7 WHERE id = ?",
        (run.id,),
    )
    with plait.Engine(db_url) as engine:
        engine.register(flow)
        assert engine.get_run(run.id).result(timeout=10) == 3
    assert run_sql(db_url, "SELECT lease_token FROM plait_runs WHERE id = ?", (run.id,)) == [(8,)]


def test_live_lease_of_another_host_is_left_alone(db_url: str) -> None:
    flow = chain("held", 1)
    with plait.Engine(db_url, worker=False) as client:
        run = client.start(flow, 0)
    run_sql(
        db_url,
        "UPDATE plait_runs SET status = 'running', owner = 'elsewhere:1:1', lease_expires_at = 1e12 WHERE id = ?",
        (run.id,),
    )
    with plait.Engine(db_url, poll_interval=0.01) as engine:
        engine.register(flow)
        with pytest.raises(TimeoutError):
            engine.get_run(run.id).result(timeout=0.3)
        assert engine.get_run(run.id).status == plait.RunStatus.RUNNING
