"""Usage reports and budgets through the real HTTP server and the real ``plait`` executable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import plait
from plait.http import create_app
from tests.e2e.servers import serving


@plait.step
def ask(ctx: plait.Context, n: int) -> int:
    ctx.record_usage(model="gpt-4o-mini", provider="openai", input_tokens=1000, output_tokens=200)
    return n + 1


llm = plait.workflow("llm", input=int).dountil(ask, lambda n: n >= 3).commit()


@pytest.fixture
def api_url(db_url: str) -> Iterator[tuple[str, plait.Engine]]:
    with plait.Engine(db_url) as engine:
        engine.register(llm)
        with serving(create_app(engine)) as url:
            yield url, engine


def test_usage_report_run_usage_and_raising_a_budget_over_http(api_url: tuple[str, plait.Engine]) -> None:
    url, engine = api_url
    run = engine.start(llm, 0, budget=plait.Budget(max_tokens=2000, on_exceed="suspend"))
    engine.run_until_idle()
    with httpx.Client(base_url=url, timeout=10) as client:
        detail = client.get(f"/api/runs/{run.id}").json()
        assert detail["run"]["status"] == "suspended"
        assert detail["run"]["usage"]["calls"] == 2
        assert detail["run"]["usage"]["by_model"]["gpt-4o-mini"]["input_tokens"] == 2000
        assert [step["usage"]["calls"] for step in detail["steps"]] == [1, 1]
        bad = client.post(f"/api/runs/{run.id}/budget", json={})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "input.invalid"
        missing = client.post("/api/runs/nope/budget", json={"max_tokens": 10})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "run.not_found"
        raised = client.post(f"/api/runs/{run.id}/budget", json={"max_tokens": 100_000})
        assert raised.status_code == 200, raised.text
        assert run.result(timeout=30) == 3
        rows = client.get("/api/usage", params={"group_by": "model"}).json()
        assert [(r["key"], r["calls"], r["runs"]) for r in rows] == [("gpt-4o-mini", 3, 1)]
        assert rows[0]["cost"] == pytest.approx(3 * (1000 * 0.15 + 200 * 0.60) / 1e6)
        assert client.get("/api/usage", params={"since_seconds": 3600}).json()[0]["key"] == "llm"
        assert client.get("/api/usage", params={"since": time.time() + 3600}).json() == []
        wrong = client.get("/api/usage", params={"group_by": "planet"})
        assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "input.invalid"
        started = client.post("/api/workflows/llm/runs", json={"input": 0, "budget": {"max_tokens": 1}})
        assert started.status_code == 201, started.text
        with pytest.raises(plait.RunFailed, match="budget"):
            engine.get_run(started.json()["id"]).result(timeout=30)


APP = """
import plait

@plait.step
def ask(ctx: plait.Context, n: int) -> int:
    ctx.record_usage(model="gpt-4o-mini", provider="openai", input_tokens=1000, output_tokens=200)
    ctx.record_usage(model="claude-3-5-haiku-20241022", provider="anthropic", input_tokens=300, output_tokens=80)
    return n + 1

llm = plait.workflow("llm", input=int).then(ask).commit()
engine = plait.Engine("sqlite:///usage.db")
engine.register(llm)
"""


def plait_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("plait")
    assert exe is not None, "the plait console script is not installed (pip install -e .)"
    env = {**os.environ, "PLAIT_APP": "usageapp:engine", "COLUMNS": "200"}
    return subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_plait_usage_prints_a_table_and_json(tmp_path: Path) -> None:
    (tmp_path / "usageapp.py").write_text(APP)
    done = plait_cli(tmp_path, "run", "llm", "--input", "1", "--wait")
    assert done.returncode == 0, done.stderr
    table = plait_cli(tmp_path, "usage", "--since", "7d", "--by", "model")
    assert table.returncode == 0, table.stderr
    assert "gpt-4o-mini" in table.stdout and "claude-3-5-haiku-20241022" in table.stdout
    assert "0.000270" in table.stdout  # gpt-4o-mini: 1000 x $0.15 + 200 x $0.60 per million
    rows = json.loads(plait_cli(tmp_path, "usage", "--json").stdout)
    assert [(r["key"], r["calls"]) for r in rows] == [("llm", 2)]
    wrong = plait_cli(tmp_path, "usage", "--by", "planet")
    assert wrong.returncode == 2 and "input.invalid" in wrong.stderr
