"""The real ``plait`` executable: demo, run --wait, runs, events, workflows, db, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

APP = """
import plait

@plait.step
def double(x: int) -> int:
    return x * 2

@plait.step
def explode(x: int) -> int:
    raise RuntimeError("kaboom")

doubler = plait.workflow("doubler", input=int).then(double).commit()
exploder = plait.workflow("exploder", input=int).then(explode).commit()
engine = plait.Engine("sqlite:///cli.db")
engine.register(doubler, exploder)
"""


def plait_cli(cwd: Path, *args: str, timeout: float = 120, columns: int = 200) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("plait")
    assert exe is not None, "the plait console script is not installed (pip install -e .)"
    env = {**os.environ, "PLAIT_APP": "cliapp:engine", "COLUMNS": str(columns)}
    return subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "cliapp.py").write_text(APP)
    return tmp_path


@pytest.mark.parametrize("crash", [False, True])
def test_demo_completes_and_sends_every_email_once(tmp_path: Path, crash: bool) -> None:
    # 80 columns, as a pipe or a small terminal gives: long paths must not break the closing hint.
    done = plait_cli(tmp_path, "demo", "--dir", str(tmp_path / "demo"), *(["--crash"] if crash else []), columns=80)
    assert done.returncode == 0, done.stderr
    assert "4 sign-ups welcomed and followed up" in done.stdout
    assert "8 emails in the sink" in done.stdout
    assert len(list((tmp_path / "demo" / "outbox").glob("*.eml"))) == 8
    # The closing hint is one line, so it can be copied whole however narrow the output is.
    db = f"sqlite:///{tmp_path / 'demo' / 'plait.db'}"
    assert f"look inside: plait runs show demo-batch --db {db}\n" in done.stdout
    if crash:
        assert "killed process" in done.stdout and "resumed by the new process" in done.stdout


def test_run_wait_prints_the_result_and_exit_codes_tell_success_from_failure(project: Path) -> None:
    ok = plait_cli(project, "run", "doubler", "--input", "21", "--wait")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "42"
    as_json = plait_cli(project, "run", "doubler", "--input", "5", "--wait", "--json")
    assert json.loads(as_json.stdout)["output"] == 10
    failed = plait_cli(project, "run", "exploder", "--input", "1", "--wait")
    assert failed.returncode == 1
    assert failed.stderr.strip().count("\n") == 0 and "kaboom" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_bad_input_is_one_line_and_exit_code_2(project: Path) -> None:
    for args in (
        ["run", "doubler", "--input", "{not json"],
        ["run", "doubler", "--input", '"text"'],
        ["run", "nowhere", "--input", "1"],
        ["run", "doubler", "--input", "@missing.json"],
    ):
        done = plait_cli(project, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr
    assert "Traceback" in plait_cli(project, "--debug", "run", "doubler", "--input", '"text"').stderr


def test_runs_events_workflows_and_db_commands(project: Path) -> None:
    started = plait_cli(project, "run", "doubler", "--input", "3", "--wait", "--json")
    run_id = json.loads(started.stdout)["run_id"]
    listed = json.loads(plait_cli(project, "runs", "list", "--json").stdout)
    assert [r["id"] for r in listed["items"]] == [run_id]
    shown = json.loads(plait_cli(project, "runs", "show", run_id, "--json").stdout)
    assert shown["run"]["output"] == 6 and [s["step_id"] for s in shown["steps"]] == ["double"]
    events = plait_cli(project, "events", run_id, "--follow").stdout.splitlines()
    assert "run.created" in events[0] and "run.completed" in events[-1]
    assert "doubler" in plait_cli(project, "workflows", "list").stdout
    assert plait_cli(project, "workflows", "graph", "doubler").stdout.startswith("flowchart TD")
    assert json.loads(plait_cli(project, "workflows", "graph", "doubler", "--format", "json").stdout)["id"] == "doubler"
    assert plait_cli(project, "runs", "cancel", run_id).stdout.strip() == "already finished"
    rerun = plait_cli(project, "runs", "rerun", run_id, "--from", "double")
    assert rerun.returncode == 0 and rerun.stdout.strip() != run_id
    assert plait_cli(project, "db", "upgrade", "--db", "sqlite:///cli.db").returncode == 0
    assert "deleted 0 runs" in plait_cli(project, "db", "prune", "--db", "sqlite:///cli.db").stdout
    assert (
        "deleted 0 runs" in plait_cli(project, "db", "prune", "--older-than", "12h", "--db", "sqlite:///cli.db").stdout
    )
    assert plait_cli(project, "db", "prune", "--older-than", "soon", "--db", "sqlite:///cli.db").returncode == 2


def test_schedules_commands(project: Path) -> None:
    (project / "schedapp.py").write_text(
        APP + "\nengine.schedule(doubler, cron='0 6 * * 1-5', timezone='Europe/Paris', input=2, id='weekday')\n"
    )
    env_app = ["--app", "schedapp:engine"]
    listed = json.loads(plait_cli(project, "schedules", "list", *env_app, "--json").stdout)
    assert [(s["id"], s["cron"], s["paused"]) for s in listed] == [("weekday", "0 6 * * 1-5", False)]
    assert plait_cli(project, "schedules", "pause", "weekday", *env_app).returncode == 0
    assert json.loads(plait_cli(project, "schedules", "list", *env_app, "--json").stdout)[0]["paused"] is True
    assert plait_cli(project, "schedules", "trigger", "weekday", *env_app).stdout.strip()
    missing = plait_cli(project, "schedules", "remove", "nope", *env_app)
    assert missing.returncode == 2


def test_server_refuses_to_bind_beyond_localhost_without_tokens(project: Path) -> None:
    refused = plait_cli(project, "server", "--host", "0.0.0.0", "--port", "0")
    assert refused.returncode == 2
    assert "without API tokens" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    created = plait_cli(project, "tokens", "create", "--scope", "admin", "--db", "sqlite:///cli.db")
    token = created.stdout.strip()
    assert created.returncode == 0 and token.startswith("plt_") and token not in created.stderr
    token_id = token.split("_")[1]
    assert plait_cli(project, "tokens", "revoke", token_id, "--db", "sqlite:///cli.db").returncode == 0
    assert plait_cli(project, "tokens", "revoke", token_id, "--db", "sqlite:///cli.db").returncode == 2
