"""SIGKILL a real process mid-run; a new process on the same file finishes every run."""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

APP = Path(__file__).with_name("crash_app.py")


def spawn(db: Path, log: Path, mode: str, *run_ids: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APP), str(db), str(log), mode, *run_ids],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.02)  # polling another process's progress, not waiting for a timer
    raise AssertionError(f"timed out waiting for {what}")


def log_counts(log: Path) -> collections.Counter[str]:
    return collections.Counter(log.read_text().split()) if log.exists() else collections.Counter()


def committed_steps(db: Path, run_id: str) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT step_id FROM plait_steps WHERE run_id = ? AND status = 'succeeded' ORDER BY finished_at", (run_id,)
        ).fetchall()
    except sqlite3.OperationalError:  # the other process has not created the schema yet
        return []
    finally:
        conn.close()
    return [row[0] for row in rows]


def finish_in_new_process(db: Path, log: Path, *run_ids: str) -> str:
    survivor = spawn(db, log, "run", *run_ids)
    out, err = survivor.communicate(timeout=60)
    assert survivor.returncode == 0, err
    return out


@pytest.mark.parametrize("runs", [1, 3])
def test_kill_inside_step_3_reruns_only_step_3(tmp_path: Path, runs: int) -> None:
    db, log = tmp_path / "crash.db", tmp_path / "steps.log"
    run_ids = [f"run-{i}" for i in range(runs)]
    victim = spawn(db, log, "block_inside", *run_ids)
    wait_until(lambda: log_counts(log)["s3"] == runs, "every run to enter step s3")
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=10)

    out = finish_in_new_process(db, log, *run_ids)
    for run_id in run_ids:
        assert f"{run_id} 5" in out
        assert committed_steps(db, run_id) == ["s1", "s2", "s3", "s4", "s5"]
    assert log_counts(log) == {"s1": runs, "s2": runs, "s3": 2 * runs, "s4": runs, "s5": runs}


def test_kill_between_steps_repeats_nothing(tmp_path: Path) -> None:
    db, log = tmp_path / "crash.db", tmp_path / "steps.log"
    victim = spawn(db, log, "block_before", "run-x")
    wait_until(lambda: db.exists() and committed_steps(db, "run-x") == ["s1", "s2"], "s2 to commit")
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=10)

    out = finish_in_new_process(db, log, "run-x")
    assert "run-x 5" in out
    assert log_counts(log) == {"s1": 1, "s2": 1, "s3": 1, "s4": 1, "s5": 1}


def test_drip_campaign_survives_a_kill_while_sleeping(tmp_path: Path) -> None:
    app = Path(__file__).with_name("drip_app.py")
    db, log = tmp_path / "drip.db", tmp_path / "mail.log"
    victim = subprocess.Popen(
        [sys.executable, str(app), str(db), str(log), "start"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert victim.stdout is not None
    assert victim.stdout.readline().strip() == "parked"
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=10)

    survivor = subprocess.run(
        [sys.executable, str(app), str(db), str(log), "finish"], capture_output=True, text=True, timeout=60
    )
    assert survivor.returncode == 0, survivor.stderr
    assert survivor.stdout.split() == ["ada", "upgraded", "bob", "nudged"]
    assert collections.Counter(log.read_text().split()) == {
        "welcome:ada@x": 1,
        "welcome:bob@x": 1,
        "tip:ada@x": 1,
        "tip:bob@x": 1,
        "thanks:pro": 1,
        "nudge:-": 1,
    }


def test_event_stream_followed_live_across_a_kill_equals_the_stored_history(tmp_path: Path) -> None:
    import threading

    import plait

    db, log = tmp_path / "crash.db", tmp_path / "steps.log"
    victim = spawn(db, log, "block_inside", "run-ev")
    wait_until(lambda: log_counts(log)["s3"] == 1, "the run to enter step s3")
    seen: list[plait.Event] = []
    with plait.Engine(f"sqlite:///{db}", worker=False) as watcher:
        handle = watcher.get_run("run-ev")
        reader = threading.Thread(target=lambda: seen.extend(handle.events()))
        reader.start()
        os.kill(victim.pid, signal.SIGKILL)
        victim.communicate(timeout=10)
        finish_in_new_process(db, log, "run-ev")
        reader.join(timeout=60)
        assert not reader.is_alive()
        history = list(handle.events(follow=False))
    assert [e.model_dump() for e in seen] == [e.model_dump() for e in history]
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    kinds = [(e.type, e.step_id) for e in history]
    assert kinds[:6] == [
        ("run.created", None),
        ("run.started", None),
        ("step.started", "s1"),
        ("step.completed", "s1"),
        ("step.started", "s2"),
        ("step.completed", "s2"),
    ]
    assert ("run.resumed", None) in kinds
    assert kinds[-1] == ("run.completed", None)
    assert [k for k in kinds if k == ("step.completed", "s3")] == [("step.completed", "s3")]
