"""``ctx.start_child`` starts exactly one child even when the worker is SIGKILLed before the step commits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import plait
from tests.integration.test_crash_recovery import wait_until

APP = Path(__file__).with_name("start_child_app.py")


def spawn(url: str, log: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APP), url, str(log), mode, "parent-1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_kill_after_the_child_started_leaves_exactly_one_child(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "children.log"
    victim = spawn(db_url, log, "hang")
    wait_until(lambda: log.exists() and log.read_text().count("started") == 1, "the child to be started")
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=10)

    survivor = spawn(db_url, log, "run")
    out, err = survivor.communicate(timeout=90)
    assert survivor.returncode == 0, err
    started = log.read_text().split()[1::2]
    assert len(started) == 2 and started[0] == started[1]  # the step ran twice, and found the same child
    assert out.strip() == started[0]
    with plait.Engine(db_url, worker=False) as engine:
        children = engine.list_runs(parent="parent-1").items
        assert [c.id for c in children] == [started[0]]
        assert engine.count_runs(workflow="greeting_child") == 1
        assert engine.get_run("parent-1").status == plait.RunStatus.SUCCEEDED
