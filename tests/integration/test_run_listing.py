"""Listing, counting and cancelling runs (engine, HTTP, CLI), and ``engine.execute`` for one-message-per-run hosts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel

import plait
from plait.http import create_app
from plait.testing import FakeClock
from tests.conftest import run_sql
from tests.e2e.servers import serving


class Paid(BaseModel):
    ok: bool


@plait.step
def double(value: int) -> int:
    return value * 2


@plait.step
def explode(value: int) -> int:
    raise RuntimeError("kaboom")


doubler = plait.workflow("doubler", input=int).then(double).commit()
exploder = plait.workflow("exploder", input=int).then(explode).commit()
waiter = plait.workflow("waiter", input=int).wait_for_event("paid", schema=Paid).commit()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def runs(db_url: str, clock: FakeClock) -> Iterator[tuple[plait.Engine, dict[str, str]]]:
    """Seven runs a second apart: 3 succeeded, 2 failed, 1 waiting, 1 cancelled (with a reason)."""
    with plait.Engine(db_url, clock=clock) as engine:
        engine.register(doubler, exploder, waiter)
        ids: dict[str, str] = {}
        for name, flow in [("ok1", doubler), ("bad1", exploder), ("ok2", doubler), ("wait", waiter)]:
            ids[name] = engine.start(flow, 1).id
            engine.run_until_idle()
            clock.advance(seconds=1)
        for name, flow in [("ok3", doubler), ("bad2", exploder), ("gone", waiter)]:
            ids[name] = engine.start(flow, 1).id
            engine.run_until_idle()
            clock.advance(seconds=1)
        assert engine.cancel(ids["gone"], reason="customer left")
        yield engine, ids


def all_pages(engine: plait.Engine, **filters: object) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = engine.list_runs(limit=2, cursor=cursor, **filters)  # type: ignore[arg-type]
        seen += [run.id for run in page.items]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


def test_list_runs_by_several_statuses_in_every_order_with_cursors(runs: tuple[plait.Engine, dict[str, str]]) -> None:
    engine, ids = runs
    created = [ids[n] for n in ("ok1", "bad1", "ok2", "wait", "ok3", "bad2", "gone")]
    assert all_pages(engine) == created[::-1]
    assert all_pages(engine, order="created") == created
    ended = [ids[n] for n in ("ok1", "bad1", "ok2", "ok3", "bad2", "gone")]
    assert all_pages(engine, order="-finished") == [*ended[::-1], ids["wait"]]  # unfinished runs come last
    assert all_pages(engine, status=["failed", "cancelled"], order="created") == [ids["bad1"], ids["bad2"], ids["gone"]]
    assert all_pages(engine, status=plait.RunStatus.WAITING) == [ids["wait"]]
    assert all_pages(engine, status=["succeeded"], workflow=doubler) == [ids["ok3"], ids["ok2"], ids["ok1"]]


def test_a_cursor_is_only_valid_for_its_own_order(runs: tuple[plait.Engine, dict[str, str]]) -> None:
    engine, _ = runs
    cursor = engine.list_runs(limit=1, order="created").next_cursor
    assert cursor is not None
    with pytest.raises(plait.InputValidationError, match="made for order='created'"):
        engine.list_runs(cursor=cursor, order="-finished")
    with pytest.raises(plait.InputValidationError, match="unknown order"):
        engine.list_runs(order="newest")  # type: ignore[arg-type]
    with pytest.raises(plait.InputValidationError, match="unknown status 'done'"):
        engine.list_runs(status=["failed", "done"])


def test_count_runs(runs: tuple[plait.Engine, dict[str, str]]) -> None:
    engine, _ = runs
    assert engine.count_runs() == 7
    assert engine.count_runs(status="succeeded") == 3
    assert engine.count_runs(status=["failed", "cancelled"]) == 3
    assert engine.count_runs(status="failed", workflow="exploder") == 2
    assert engine.count_runs(workflow=waiter) == 2


def test_cancel_reason_is_stored_and_carried_by_the_event(runs: tuple[plait.Engine, dict[str, str]]) -> None:
    engine, ids = runs
    gone = engine.get_run(ids["gone"])
    assert gone.info().cancel_reason == "customer left"
    (event,) = [e for e in gone.events(follow=False) if e.type == "run.cancelled"]
    assert event.payload == {"reason": "customer left"}
    with pytest.raises(plait.RunCancelled, match="customer left"):
        gone.result(timeout=5)
    waiting = engine.get_run(ids["wait"])
    assert waiting.cancel(reason="no payment after 30 days")
    assert waiting.info().cancel_reason == "no payment after 30 days"
    assert not waiting.cancel(reason="again")  # already ended: the first reason stays
    assert waiting.info().cancel_reason == "no payment after 30 days"
    with pytest.raises(plait.InputValidationError, match="cancel reason"):
        engine.cancel(ids["ok1"], reason="x" * 5000)


# -- HTTP and CLI ------------------------------------------------------------


def test_http_lists_counts_and_cancels_with_a_reason(runs: tuple[plait.Engine, dict[str, str]]) -> None:
    engine, ids = runs
    with serving(create_app(engine)) as url, httpx.Client(base_url=url, timeout=10) as http:
        listed = http.get("/api/runs", params=[("status", "failed"), ("status", "cancelled"), ("order", "created")])
        assert listed.status_code == 200, listed.text
        assert [r["id"] for r in listed.json()["items"]] == [ids["bad1"], ids["bad2"], ids["gone"]]
        assert listed.json()["items"][-1]["cancel_reason"] == "customer left"
        page = http.get("/api/runs", params={"order": "-finished", "limit": 2}).json()
        rest = http.get("/api/runs", params={"order": "-finished", "cursor": page["next_cursor"]}).json()
        assert len(page["items"]) + len(rest["items"]) == 7
        assert http.get("/api/runs/count", params=[("status", "succeeded"), ("status", "failed")]).json() == {
            "count": 5
        }
        assert http.get("/api/runs/count", params={"workflow": "waiter"}).json() == {"count": 2}
        bad = http.get("/api/runs", params={"order": "sideways"})
        assert bad.status_code == 422 and "error" in bad.json()
        cancelled = http.post(f"/api/runs/{ids['wait']}/cancel", json={"reason": "stale"})
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled" and cancelled.json()["cancel_reason"] == "stale"
        no_body = http.post(f"/api/runs/{ids['ok1']}/cancel")  # a body stays optional
        assert no_body.status_code == 200 and no_body.json()["cancel_reason"] is None


CLI_APP = """
import plait

@plait.step
def double(x: int) -> int:
    return x * 2

@plait.step
def explode(x: int) -> int:
    raise RuntimeError("kaboom")

doubler = plait.workflow("doubler", input=int).then(double).commit()
exploder = plait.workflow("exploder", input=int).then(explode).commit()
waiter = plait.workflow("waiter", input=int).sleep(3600).commit()
engine = plait.Engine("sqlite:///cli.db")
engine.register(doubler, exploder, waiter)
"""


def plait_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("plait")
    assert exe is not None, "the plait console script is not installed (pip install -e .)"
    env = {**os.environ, "PLAIT_APP": "cliapp:engine", "COLUMNS": "200"}
    return subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_cli_lists_by_status_and_order_and_cancels_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "cliapp.py").write_text(CLI_APP)
    ok = json.loads(plait_cli(tmp_path, "run", "doubler", "--input", "3", "--wait", "--json").stdout)["run_id"]
    bad = plait_cli(tmp_path, "run", "exploder", "--input", "3").stdout.strip()
    sleeping = plait_cli(tmp_path, "run", "waiter", "--input", "3").stdout.strip()
    cancelled = plait_cli(tmp_path, "runs", "cancel", sleeping, "--reason", "not needed")
    assert cancelled.stdout.strip() == "cancelled", cancelled.stderr
    shown = json.loads(plait_cli(tmp_path, "runs", "show", sleeping, "--json").stdout)
    assert shown["run"]["cancel_reason"] == "not needed"
    listed = plait_cli(
        tmp_path, "runs", "list", "--status", "succeeded", "--status", "cancelled", "--order", "created", "--json"
    )
    assert [r["id"] for r in json.loads(listed.stdout)["items"]] == [ok, sleeping], listed.stderr
    newest = json.loads(plait_cli(tmp_path, "runs", "list", "--order", "-created", "--json").stdout)
    assert [r["id"] for r in newest["items"]] == [sleeping, bad, ok]
    assert plait_cli(tmp_path, "runs", "list", "--order", "sideways").returncode == 2


# -- engine.execute ----------------------------------------------------------


@plait.step
def first(value: int) -> int:
    return value + 1


@plait.step
def second(value: int) -> int:
    return value * 10


two_steps = plait.workflow("two_steps", input=int).then(first).then(second).commit()
napper = plait.workflow("napper", input=int).then(first).sleep(timedelta(hours=1)).then(second).commit()


@pytest.fixture
def client(db_url: str, clock: FakeClock) -> Iterator[plait.Engine]:
    """A serverless host's engine: no background worker, only execute()."""
    with plait.Engine(db_url, clock=clock, worker=False) as engine:
        engine.register(two_steps, napper)
        yield engine


def test_execute_runs_one_run_to_its_end(client: plait.Engine) -> None:
    run = client.start(two_steps, 1)
    other = client.start(two_steps, 5)
    info = client.execute(run.id, budget=30)
    assert info.status == plait.RunStatus.SUCCEEDED and info.output == 20
    assert other.status == plait.RunStatus.PENDING  # only the run asked for


def test_execute_stops_where_the_run_parks_and_continues_when_due(client: plait.Engine, clock: FakeClock) -> None:
    run = client.start(napper, 1)
    info = client.execute(run.id)
    assert info.status == plait.RunStatus.WAITING and info.wait is not None and info.wait["kind"] == "sleep"
    assert client.execute(run.id).status == plait.RunStatus.WAITING  # not due: nothing runs
    clock.advance(hours=1)
    assert client.execute(run.id).output == 20
    assert [s.step_id for s in run.steps()] == ["first", "second"]


def test_execute_leaves_alone_a_run_another_worker_holds(client: plait.Engine, db_url: str) -> None:
    run = client.start(two_steps, 1)
    run_sql(
        db_url,
        "UPDATE plait_runs SET status = 'running', owner = 'elsewhere:1', lease_expires_at = ?, lease_token = 7 "
        "WHERE id = ?",
        (4e9, run.id),
    )
    info = client.execute(run.id)
    assert info.status == plait.RunStatus.RUNNING and run.steps() == []


def test_execute_hands_the_run_back_once_its_budget_is_spent(client: plait.Engine) -> None:
    run = client.start(two_steps, 1)
    info = client.execute(run.id, budget=1e-9)  # spent before the first step boundary
    assert info.status == plait.RunStatus.PENDING
    assert info.output is None
    assert client.execute(run.id, budget=30).output == 20


def test_execute_needs_the_workflow_registered(db_url: str) -> None:
    with plait.Engine(db_url, worker=False) as starter:
        run_id = starter.start(two_steps, 1).id
    with plait.Engine(db_url, worker=False) as bare:
        with pytest.raises(plait.WorkflowNotFound, match=r"engine\.register"):
            bare.execute(run_id)
        with pytest.raises(plait.InputValidationError, match="budget"):
            bare.execute(run_id, budget=0)
