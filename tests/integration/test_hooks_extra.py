"""Hooks on_run_created, on_run_cancelled and on_hook_error; a raising hook never breaks a run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import plait
from plait.hooks import HookInfo
from plait.testing import FakeClock


@plait.step
def double(n: int) -> int:
    return n * 2


doubling = plait.workflow("doubling", input=int).then(double).commit()
sleepy = plait.workflow("sleepy", input=int).sleep(timedelta(days=1)).then(double).commit()
parent = plait.workflow("parent", input=int).then(sleepy).commit()


def test_created_cancelled_and_hook_errors(db_url: str) -> None:
    seen: list[tuple[str, str, str | None]] = []
    errors: list[HookInfo] = []

    def created(info: HookInfo) -> None:
        seen.append(("created", info.workflow_id, info.status))

    async def cancelled(info: HookInfo) -> None:
        seen.append(("cancelled", info.workflow_id, info.status))

    def broken(info: HookInfo) -> None:
        raise RuntimeError(f"hook bug in {info.run_id}")

    clock = FakeClock(datetime(2030, 1, 1, tzinfo=UTC))
    with plait.Engine(db_url, clock=clock) as engine:
        engine.add_hooks(plait.Hooks(on_run_created=created, on_run_cancelled=cancelled, on_hook_error=errors.append))
        engine.add_hooks(after_run=broken, on_run_created=broken)
        run = engine.start(doubling, 2)
        assert run.result(timeout=10) == 4  # two raising hooks, and the run is fine
        engine.on_complete(doubling, start=parent)
        follow = engine.start(doubling, 3)
        assert follow.result(timeout=10) == 6
        engine.run_until_idle()
        waiting = engine.list_runs(workflow="parent").items[0]
        engine.run_until_idle()
        child = engine.list_runs(workflow="sleepy").items[0]
        assert engine.cancel(waiting.id)
        engine.schedule(doubling, cron="0 * * * *", input=5, id="hourly")
        clock.advance(hours=1)
        engine.run_until_idle()
    created_ids = [wf for kind, wf, _ in seen if kind == "created"]
    # started twice, the trigger's parent, the schedule's run and its trigger's parent
    # (child runs are started by the worker running their parent, not announced here)
    assert created_ids == ["doubling", "doubling", "parent", "doubling", "parent"]
    cancelled_ones = sorted((wf, status) for kind, wf, status in seen if kind == "cancelled")
    assert cancelled_ones == [("parent", "cancelled"), ("sleepy", "cancelled")]
    assert child.workflow_id == "sleepy"
    failed = {(info.hook, info.run_id) for info in errors}
    assert ("after_run", run.id) in failed and ("on_run_created", run.id) in failed
    first = next(info for info in errors if info.hook == "after_run" and info.run_id == run.id)
    assert isinstance(first.exception, RuntimeError)
    assert first.error == {"type": "RuntimeError", "message": f"hook bug in {run.id}"}


def test_a_raising_on_hook_error_is_only_logged(engine: plait.Engine) -> None:
    def broken(info: HookInfo) -> None:
        raise RuntimeError("first")

    def worse(info: HookInfo) -> None:
        raise RuntimeError("second")

    engine.add_hooks(before_run=broken, on_hook_error=worse)
    assert engine.start(doubling, 1).result(timeout=10) == 2


def test_workflow_hooks_hear_created_and_cancelled(engine: plait.Engine) -> None:
    heard: list[str] = []
    hooks = plait.Hooks(
        on_run_created=lambda info: heard.append(f"created {info.run_id}"),
        on_run_cancelled=lambda info: heard.append(f"cancelled {info.run_id}"),
    )
    flow = plait.workflow("held", input=int, hooks=hooks).sleep(timedelta(days=1)).then(double).commit()
    run = engine.start(flow, 1)
    run.cancel()
    assert heard == [f"created {run.id}", f"cancelled {run.id}"]
