"""The first five minutes of a new user: clear timeouts, HTTP answers, CLI behaviour, PostgreSQL, typing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import plait
from plait.cli.runs import ProgressLine
from plait.runs import Event
from plait.testing import FakeClock
from tests.e2e.servers import free_port, serving

ROOT = Path(__file__).resolve().parents[2]

APP = """
import time

import plait

@plait.step
def double(ctx: plait.Context, x: int) -> int:
    ctx.progress(0.5, "halfway")
    ctx.log.info("doubling %s", x)
    return x * 2

@plait.step
def explode(x: int) -> int:
    raise RuntimeError("kaboom")

@plait.step
def explode_later(x: int) -> int:
    time.sleep(0.3)  # still running when `plait run --wait` first looks
    raise RuntimeError("kaboom later")

doubler = plait.workflow("doubler", input=int).then(double).commit()
exploder = plait.workflow("exploder", input=int).then(explode).commit()
late_exploder = plait.workflow("late_exploder", input=int).then(explode_later).commit()
held = plait.workflow("held", input=int).wait_for_event("go", schema=int).commit()
engine = plait.Engine()
engine.register(doubler, exploder, late_exploder, held)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "firstapp.py").write_text(APP)
    return tmp_path


def plait_cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("plait")
    assert exe is not None, "the plait console script is not installed (pip install -e .)"
    base = {k: v for k, v in os.environ.items() if k != "PLAIT_DATABASE_URL"}
    full = {**base, "PLAIT_APP": "firstapp:engine", "COLUMNS": "200", **(env or {})}
    return subprocess.run([exe, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=120)


# -- result(timeout=) says why ------------------------------------------------


@plait.step
def noop(x: int) -> int:
    return x


def test_result_timeout_says_why_the_run_is_not_moving(db_url: str) -> None:
    clock = FakeClock(datetime(2030, 1, 1, tzinfo=UTC))
    napping = plait.workflow("napping", input=int).sleep(timedelta(hours=2)).then(noop).commit()
    waiting = plait.workflow("waiting", input=int).wait_for_event("paid", schema=int).then(noop).commit()
    with plait.Engine(db_url, worker=False) as client:
        pending = client.start(napping, 1)
        with pytest.raises(plait.ResultTimeout, match="pending: no worker has claimed it") as caught:
            pending.result(timeout=0.05)
        assert isinstance(caught.value, TimeoutError) and caught.value.code == "run.result_timeout"
        assert caught.value.run_id == pending.id and caught.value.status == "pending"
    with plait.Engine(db_url, clock=clock) as engine:
        sleeping = engine.start(napping, 1)
        engine.run_until_idle()
        with pytest.raises(TimeoutError, match="sleeping until 2030-01-01 02:00:00 UTC"):
            sleeping.result(timeout=0.05)
        parked = engine.start(waiting, 1)
        engine.run_until_idle()
        with pytest.raises(plait.ResultTimeout, match="waiting for event 'paid'"):
            parked.result(timeout=0.05)


def test_result_timeout_names_the_missing_workflow_version(db_url: str) -> None:
    old = plait.workflow("versioned", input=int, version="1").then(noop).commit()
    new = plait.workflow("versioned", input=int, version="2").then(noop).commit()
    with plait.Engine(db_url, worker=False) as client:
        run = client.start(old, 1)
    with plait.Engine(db_url, poll_interval=0.05) as worker:
        assert worker.start(new, 2).result(timeout=20) == 2  # its worker is up, and has only version 2
        deadline = time.monotonic() + 20
        while worker.get_run(run.id).info().status_message is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)  # the worker's claim loop marks the run in another thread
        with pytest.raises(plait.ResultTimeout, match="waiting for a worker that has workflow 'versioned'"):
            worker.get_run(run.id).result(timeout=0.05)


# -- HTTP ------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> Iterator[httpx.Client]:
    from plait.http import create_app

    engine = plait.Engine(f"sqlite:///{tmp_path / 'http.db'}", worker=False)
    engine.register(plait.workflow("echo", input=int).then(noop).commit())
    with serving(create_app(engine)) as base, httpx.Client(base_url=base, timeout=30) as http:
        yield http
    engine.close()


FORM = {"content-type": "application/x-www-form-urlencoded"}  # what `curl -d` sends


def test_a_curl_d_body_gets_the_header_to_add(client: httpx.Client) -> None:
    refused = client.post("/api/workflows/echo/runs", content=b'{"input": 1}', headers=FORM)
    assert refused.status_code == 415
    assert "-H 'Content-Type: application/json'" in refused.json()["error"]["message"]
    assert client.get("/api/runs").json()["items"] == []  # nothing was started
    malformed = client.post("/api/workflows/echo/runs", content=b"input=1", headers=FORM)
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "request.malformed"
    unknown = client.post("/api/workflows/nope/runs", content=b'{"input": 1}', headers=FORM)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "workflow.not_found"
    plain = client.post("/api/runs/r1/cancel", content=b"{}", headers={"content-type": "text/plain"})
    assert plain.status_code == 415
    accepted = client.post("/api/workflows/echo/runs", json={"input": 1})
    assert accepted.status_code == 201


def test_every_request_body_in_the_openapi_has_an_example(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    bodies = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if content is None:
                continue
            bodies += 1
            schema = content["schema"]
            # An optional body (``Cancel | None``) is an anyOf of the model and null.
            schema = next((s for s in schema.get("anyOf", []) if "$ref" in s), schema)
            if "$ref" in schema:
                schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
            assert schema.get("examples") or content.get("examples"), f"{method.upper()} {path} has no example"
    assert bodies >= 6


# -- CLI -------------------------------------------------------------------------------


def test_cli_with_a_plain_db_path_json_failures_and_command_hints(project: Path) -> None:
    done = plait_cli(project, "run", "doubler", "--input", "21", "--wait", "--json", "--db", "app.db")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"] == 42
    assert (project / "app.db").exists()
    failed = plait_cli(project, "run", "exploder", "--input", "1", "--wait", "--json", "--db", "app.db")
    assert failed.returncode == 1
    outcome = json.loads(failed.stdout)
    assert outcome["status"] == "failed" and "kaboom" in outcome["error"]["message"]
    late = plait_cli(project, "run", "late_exploder", "--input", "1", "--wait", "--json", "--db", "app.db")
    assert late.returncode == 1
    assert json.loads(late.stdout)["status"] == "failed"  # not the "running" it was when the wait began
    failed_text = plait_cli(project, "run", "exploder", "--input", "1", "--wait", "--db", "app.db")
    assert failed_text.returncode == 1
    assert "plait runs retry " in failed_text.stderr and "engine.retry" not in failed_text.stderr
    missing = plait_cli(project, "runs", "show", "nope", "--db", "app.db")
    assert missing.returncode == 2 and "`plait runs list`" in missing.stderr
    narrow = plait_cli(project, "runs", "list", "--db", "app.db", env={"COLUMNS": "40"})
    assert narrow.returncode == 0
    assert outcome["run_id"] in narrow.stdout  # the whole id, however narrow the terminal
    for command in (["schedules", "list"], ["webhooks", "list"], ["documents", "list"], ["events", outcome["run_id"]]):
        assert plait_cli(project, *command, "--db", "app.db").returncode == 0, command


def test_ctrl_c_while_waiting_says_the_run_continues(project: Path) -> None:
    exe = shutil.which("plait")
    assert exe is not None
    env = {**os.environ, "PLAIT_APP": "firstapp:engine", "PLAIT_DATABASE_URL": f"sqlite:///{project / 'c.db'}"}
    proc = subprocess.Popen(
        [exe, "run", "held", "--input", "1", "--wait"], cwd=project, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        with plait.Engine(env["PLAIT_DATABASE_URL"], worker=False) as reader:
            deadline = time.monotonic() + 60
            while not reader.list_runs(status="waiting").items:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)  # the CLI process starts the run and parks it
            run_id = reader.list_runs(status="waiting").items[0].id
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert f"run {run_id} is stored and continues" in err and f"plait events {run_id} --follow" in err


def test_the_progress_line_shows_fraction_message_log_and_a_clock() -> None:
    line = ProgressLine("r1", 2)

    def event(type_: str, payload: Any = None) -> Event:
        return Event(
            id=1, run_id="r1", workflow_id="w", seq=1, type=type_, step_id="fetch", step_key="fetch",
            attempt=1, payload=payload, created_at=datetime.now(UTC),
        )  # fmt: skip

    line.see(event("step.started"))
    line.see(event("step.progress", {"fraction": 0.5, "message": "page 5 of 10"}))
    line.see(event("step.log", {"level": "info", "message": "fetched page 5"}))
    text = line.text().plain
    assert "0/2 steps" in text and "running fetch" in text and "50% page 5 of 10" in text
    assert "log: fetched page 5" in text and "0:00" in text
    line.started -= 65  # rendered anew at each refresh: the clock moves without any event
    assert "1:05" in line.__rich__().plain


def test_worker_logs_a_line_per_run_and_quiet_silences_it(project: Path) -> None:
    exe = shutil.which("plait")
    assert exe is not None
    url = f"sqlite:///{project / 'w.db'}"
    for quiet in (False, True):
        env = {**os.environ, "PLAIT_APP": "firstapp:engine", "PLAIT_DATABASE_URL": url}
        args = [exe, "worker", *(["--quiet"] if quiet else [])]
        proc = subprocess.Popen(args, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            started = plait_cli(project, "run", "doubler", "--input", "4", "--db", url)  # only enqueues
            assert started.returncode == 0, started.stderr
            run_id = started.stdout.strip()
            with plait.Engine(url, worker=False) as client:
                assert client.get_run(run_id).result(timeout=60) == 8
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        if quiet:
            assert run_id not in err
        else:
            assert f"run {run_id} of doubler started" in err and f"run {run_id} of doubler succeeded" in err


# -- PostgreSQL ------------------------------------------------------------------------------


def test_a_client_engine_on_postgres_exits_without_task_warnings(postgres_url: str, tmp_path: Path) -> None:
    script = f"""
import plait
engine = plait.Engine({postgres_url!r}, worker=False)
print(len(engine.list_runs().items))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "0", done.stderr
    assert "Task was destroyed" not in done.stderr and done.stderr == ""


def test_an_unreachable_postgres_fails_fast_naming_the_host(project: Path) -> None:
    # A server that accepts connections and never answers: the slowest way to be unreachable.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    try:
        started = time.monotonic()
        done = plait_cli(project, "runs", "list", "--db", f"postgresql://postgres@127.0.0.1:{port}/nowhere")
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error [store.unavailable]")
    assert f"127.0.0.1:{port}/nowhere" in lines[0]
    assert elapsed < 20  # about 5 s of connect timeout, plus the interpreter's start


# -- typing -------------------------------------------------------------------------------------


def test_mypy_finds_plait_from_another_project(tmp_path: Path) -> None:
    (tmp_path / "user.py").write_text("import plait\n\nengine: plait.Engine = plait.Engine('sqlite:///x.db')\n")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / ".cache"), "user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")},
    )
    assert done.returncode == 0, done.stdout
    assert (ROOT / "plait" / "py.typed").exists()


def test_server_logs_a_line_per_run(project: Path) -> None:
    exe = shutil.which("plait")
    assert exe is not None
    port = free_port()
    env = {**os.environ, "PLAIT_APP": "firstapp:engine", "PLAIT_DATABASE_URL": f"sqlite:///{project / 's.db'}"}
    proc = subprocess.Popen(
        [exe, "server", "--port", str(port)], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/api/workflows", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)  # the server process is starting
        started = httpx.post(f"{base}/api/workflows/doubler/runs", json={"input": 5}, timeout=30)
        assert started.status_code == 201
        run_id = started.json()["id"]
        with plait.Engine(env["PLAIT_DATABASE_URL"], worker=False) as reader:
            assert reader.get_run(run_id).result(timeout=60) == 10
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert f"run {run_id} of doubler started" in err and f"run {run_id} of doubler succeeded" in err
