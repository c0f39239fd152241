"""Exactly once where a process leaves early, and where two callers race for one decision.

A process that starts a run and exits (a script leaving ``with Engine()``,
``plait run`` without ``--wait``) must not leave a half-run step for another
worker to repeat. A resume or approval is taken by the first caller; the
others are told so, on both backends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import plait
from tests.conftest import run_sql
from tests.integration.ledger_flows import ledgered

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).with_name("fire_and_forget_app.py")
APP_SPEC = "tests.integration.fire_and_forget_app:engine"


def env_for(db_url: str, ledger: Path) -> dict[str, str]:
    return {**os.environ, "PLAIT_DATABASE_URL": db_url, "PLAIT_TEST_LEDGER": str(ledger)}


def finish_with_a_worker(db_url: str, run_id: str) -> int:
    with plait.Engine(db_url) as worker:
        worker.register(ledgered)
        result: int = worker.get_run(run_id).result(timeout=60)
        return result


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ledger"
    path.touch()
    monkeypatch.setenv("PLAIT_TEST_LEDGER", str(path))
    return path


@pytest.mark.timeout(120)
def test_a_script_that_starts_a_run_and_leaves_runs_each_step_once(db_url: str, ledger: Path) -> None:
    script = subprocess.run(
        [sys.executable, str(APP), db_url], env=env_for(db_url, ledger), capture_output=True, text=True, timeout=90
    )
    assert script.returncode == 0, script.stderr
    run_id = script.stdout.strip()
    # The step in flight when the script left was finished and committed; the run was handed back after it.
    assert ledger.read_text().splitlines() == [f"one {run_id}"]
    assert run_sql(db_url, "SELECT status, owner FROM plait_runs WHERE id = ?", (run_id,)) == [("pending", None)]
    assert finish_with_a_worker(db_url, run_id) == 4
    assert ledger.read_text().splitlines() == [f"one {run_id}", f"two {run_id}", f"three {run_id}"]


@pytest.mark.timeout(120)
def test_plait_run_without_wait_only_enqueues(db_url: str, ledger: Path) -> None:
    command = subprocess.run(
        [sys.executable, "-m", "plait.cli", "run", "ledgered", "--app", APP_SPEC, "--input", "1"],
        env=env_for(db_url, ledger),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert command.returncode == 0, command.stderr
    run_id = command.stdout.strip()
    assert run_sql(db_url, "SELECT status, started_at, owner FROM plait_runs WHERE id = ?", (run_id,)) == [
        ("pending", None, None)
    ]
    assert ledger.read_text() == ""
    assert finish_with_a_worker(db_url, run_id) == 4
    assert ledger.read_text().splitlines() == [f"one {run_id}", f"two {run_id}", f"three {run_id}"]


# -- shutdown races --------------------------------------------------------------


def test_close_from_another_thread_while_work_runs_shuts_down_once(db_url: str) -> None:
    engine = plait.Engine(db_url)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            engine.work()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            failures.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    engine.run_until_idle()
    closers = [threading.Thread(target=engine.close) for _ in range(3)]
    for closer in closers:
        closer.start()
    engine.close()
    for thread in [*closers, worker]:
        thread.join(timeout=30)
        assert not thread.is_alive()
    assert failures == []


def test_closing_one_engine_keeps_the_webhook_lease_of_another_in_the_same_process(db_url: str) -> None:
    with plait.Engine(db_url, poll_interval=0.01) as first:
        hook = first.add_webhook("http://127.0.0.1:9/unreachable", "a-long-enough-secret")
        first.run_until_idle()  # starts its dispatcher, which leases the webhook
        owner = wait_for_webhook_owner(db_url, hook.id)
        second = plait.Engine(db_url, poll_interval=0.01)
        second.run_until_idle()
        second.close()
        assert run_sql(db_url, "SELECT owner FROM plait_webhooks WHERE id = ?", (hook.id,)) == [(owner,)]


def wait_for_webhook_owner(db_url: str, webhook_id: str) -> str:
    for _ in range(2000):
        rows = run_sql(db_url, "SELECT owner FROM plait_webhooks WHERE id = ?", (webhook_id,))
        if rows and rows[0][0]:
            return str(rows[0][0])
        threading.Event().wait(0.005)  # polling for the dispatcher's first lease, not waiting on a timer
    raise AssertionError("the webhook was never leased")


# -- one decision, many callers --------------------------------------------------


class Answer(BaseModel):
    answer: str


class Budget(BaseModel):
    amount: int


def settled(engine: plait.Engine, run: plait.RunHandle[Any], status: plait.RunStatus) -> None:
    engine.run_until_idle()
    assert run.status == status


def race(callers: list[Callable[[], object]]) -> tuple[list[object], list[BaseException]]:
    """Call every caller at once from its own thread; what they returned and what they raised."""
    barrier = threading.Barrier(len(callers))
    results: list[object] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def call(caller: Callable[[], object]) -> None:
        barrier.wait()
        try:
            value = caller()
        except BaseException as exc:  # noqa: BLE001 - collected for the test
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append(value)

    threads = [threading.Thread(target=call, args=(caller,)) for caller in callers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results, errors


def test_ten_concurrent_resumes_one_wins_the_rest_are_refused(engine: plait.Engine) -> None:
    @plait.step(resume_schema=Answer)
    def ask(ctx: plait.Context, topic: str) -> str:
        if ctx.resume_data is None:
            ctx.suspend({"question": topic})
        return str(ctx.resume_data.answer)

    flow = plait.workflow("interview", input=str).then(ask).commit()
    run = engine.start(flow, "pricing")
    settled(engine, run, plait.RunStatus.SUSPENDED)
    answers = [f"answer {i}" for i in range(10)]
    results, errors = race([lambda a=a: run.resume("ask", {"answer": a}) for a in answers])  # type: ignore[misc]
    assert len(results) == 1
    assert len(errors) == 9 and all(isinstance(e, plait.RunStateError) for e in errors), errors
    winner = run.result(timeout=30)
    assert winner in answers
    assert run.steps()[-1].output == winner


def test_ten_concurrent_approvals_one_wins_the_rest_are_refused(engine: plait.Engine) -> None:
    flow = plait.workflow("purchase", input=int).then(plait.approval("manager", schema=Budget)).commit()
    run = engine.start(flow, 1)
    settled(engine, run, plait.RunStatus.WAITING)
    callers: list[Callable[[], object]] = [lambda i=i: run.approve("manager", {"amount": i}) for i in range(9)]  # type: ignore[misc]
    callers.append(lambda: run.reject("manager", "no"))
    results, errors = race(callers)
    assert results == [True]
    assert len(errors) == 9 and all(isinstance(e, plait.RunStateError) for e in errors), errors
    assert run.result(timeout=30) is not None


def test_approve_then_approve_then_reject_the_first_decision_stands(engine: plait.Engine) -> None:
    flow = plait.workflow("purchase", input=int).then(plait.approval("manager", schema=Budget)).commit()
    run = engine.start(flow, 1)
    settled(engine, run, plait.RunStatus.WAITING)
    assert run.approve("manager", {"amount": 300}) is True
    with pytest.raises(plait.RunStateError, match="already"):
        run.approve("manager", {"amount": 5})
    with pytest.raises(plait.RunStateError, match="already"):
        run.reject("manager", "too late")
    decision = run.result(timeout=30)
    assert decision.approved and decision.data == Budget(amount=300)
    with pytest.raises(plait.RunStateError):
        run.reject("manager", "after the end")
