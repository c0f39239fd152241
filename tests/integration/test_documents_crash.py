"""SIGKILL a real process running documents: committed blocks never run again, every email goes once."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.integration.test_crash_recovery import committed_steps, log_counts, wait_until

APP = Path(__file__).with_name("documents_app.py")


def spawn(db: Path, log: Path, mode: str, *run_ids: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APP), str(db), str(log), mode, *run_ids],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_kill_inside_a_block_reruns_only_that_block(tmp_path: Path) -> None:
    db, log = tmp_path / "docs.db", tmp_path / "calls.log"
    victim = spawn(db, log, "block_inside", "run-a", "run-b")
    wait_until(lambda: log_counts(log)["s3"] == 2, "both runs to enter block s3")
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=10)

    survivor = spawn(db, log, "run", "run-a", "run-b")
    out, err = survivor.communicate(timeout=60)
    assert survivor.returncode == 0, err
    assert "run-a 5" in out and "run-b 5" in out
    for run_id in ("run-a", "run-b"):
        assert committed_steps(db, run_id) == ["s1", "s2", "s3", "s4", "s5", "_output"]
    assert log_counts(log) == {"s1": 2, "s2": 2, "s3": 4, "s4": 2, "s5": 2}


def test_drip_campaign_document_survives_a_kill_while_waiting(tmp_path: Path) -> None:
    db, log = tmp_path / "drip.db", tmp_path / "mail.log"
    victim = spawn(db, log, "drip_start")
    assert victim.stdout is not None
    assert victim.stdout.readline().strip() == "parked"
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=10)

    survivor = spawn(db, log, "drip_finish")
    out, err = survivor.communicate(timeout=60)
    assert survivor.returncode == 0, err
    assert out.split() == ["ada", "thanks", "bob", "nudge"]
    assert collections.Counter(log.read_text().split()) == {
        "welcome:ada@x": 1,
        "welcome:bob@x": 1,
        "tip:ada@x": 1,
        "tip:bob@x": 1,
        "thanks:pro": 1,
        "nudge:-": 1,
    }
