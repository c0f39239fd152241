"""Several real worker processes share one database: nothing is lost or repeated, even under SIGKILL."""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import plait
from tests.conftest import run_sql
from tests.integration.worker_app import shared

APP = Path(__file__).with_name("worker_app.py")


def start_worker(url: str, ledger: Path, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(APP), url, str(ledger), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def ledger_keys(ledger: Path) -> collections.Counter[str]:
    return collections.Counter(line.split()[0] for line in ledger.read_text().splitlines())


def assert_each_step_committed_once(url: str, runs: int) -> None:
    rows = run_sql(url, "SELECT run_id, step_key, count(*) FROM plait_steps WHERE status = 'succeeded' GROUP BY 1, 2")
    assert len(rows) == runs * 5
    assert {row[2] for row in rows} == {1}


def test_three_worker_processes_share_the_work_without_losing_or_repeating(db_url: str, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    workers = [start_worker(db_url, ledger) for _ in range(3)]
    try:
        with plait.Engine(db_url, worker=False) as client:
            runs = [client.start(shared, i) for i in range(60)]
            assert [run.result(timeout=60) for run in runs] == [i + 5 for i in range(60)]
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=30) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
        assert "locked" not in err
    counts = ledger_keys(ledger)
    assert len(counts) == 60 * 5
    assert set(counts.values()) == {1}
    assert_each_step_committed_once(db_url, 60)


@pytest.mark.timeout(240)
def test_chaos_random_sigkills_lose_nothing_and_commit_each_step_once(db_url: str, tmp_path: Path) -> None:
    on_postgres = db_url.startswith("postgresql")
    processes, total = (3, 500) if on_postgres else (2, 150)
    ledger = tmp_path / "ledger"
    workers = [start_worker(db_url, ledger, "0.2") for _ in range(processes)]
    kills = 0
    chooser = random.Random(7)
    try:
        with plait.Engine(db_url, worker=False) as client:
            runs = [client.start(shared, i) for i in range(total)]
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                done = client.list_runs(status="succeeded", limit=1).items
                if done and len(client.list_runs(status="succeeded", limit=1000).items) == total:
                    break
                time.sleep(1.0)  # the chaos rhythm: one SIGKILL about every second
                victim = chooser.randrange(processes)
                os.kill(workers[victim].pid, signal.SIGKILL)
                workers[victim].communicate(timeout=10)
                workers[victim] = start_worker(db_url, ledger, "0.2")
                kills += 1
            results = [run.result(timeout=60) for run in runs]
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.communicate(timeout=30)
    assert kills >= 2, "the workload finished before the chaos started; make it bigger"
    assert results == [i + 5 for i in range(total)]
    assert_each_step_committed_once(db_url, total)
    counts = ledger_keys(ledger)
    assert len(counts) == total * 5  # every step ran at least once
    repeats = sum(n - 1 for n in counts.values())
    assert repeats <= kills * 16  # only steps in flight in a killed worker ran again


def test_a_paused_worker_past_its_lease_cannot_commit(db_url: str, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    zombie = start_worker(db_url, ledger, "1.5", "1.0")  # each step takes 1.5 s; lease 1 s
    zombie_log: list[str] = []
    assert zombie.stderr is not None
    reader = threading.Thread(target=lambda: zombie_log.extend(zombie.stderr or []), daemon=True)
    reader.start()
    rescuer: subprocess.Popen[str] | None = None
    try:
        with plait.Engine(db_url, worker=False) as client:
            run = client.start(shared, 0)
            wait_until(lambda: f"{run.id}:p0 {zombie.pid}" in (ledger.read_text() if ledger.exists() else ""))
            os.kill(zombie.pid, signal.SIGSTOP)
            rescuer = start_worker(db_url, ledger, "0", "1.0")
            assert run.result(timeout=60) == 5
            os.kill(zombie.pid, signal.SIGCONT)
            wait_until(lambda: any("was taken over" in line for line in zombie_log))  # LeaseLost, logged
            steps = run_sql(db_url, "SELECT step_key, attempt FROM plait_steps WHERE run_id = ?", (run.id,))
            assert sorted(steps) == [("p0", 1), ("p1", 1), ("p2", 1), ("p3", 1), ("p4", 1)]
            assert client.get_run(run.id).status == plait.RunStatus.SUCCEEDED
    finally:
        os.kill(zombie.pid, signal.SIGCONT)
        zombie.send_signal(signal.SIGTERM)
        if rescuer is not None:
            rescuer.send_signal(signal.SIGTERM)
            rescuer.communicate(timeout=30)
        zombie.wait(timeout=30)
        reader.join(timeout=10)
        for pipe in (zombie.stdout, zombie.stderr):
            if pipe is not None:
                pipe.close()
    lines = ledger.read_text().splitlines()
    assert [line for line in lines if line.endswith(f" {zombie.pid}")] == [f"{run.id}:p0 {zombie.pid}"]


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for another process"
        time.sleep(0.01)  # another process's progress, not a timer


def test_sigterm_drains_at_a_step_boundary_and_hands_the_run_back(db_url: str, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    leaving = start_worker(db_url, ledger, "0.5")  # half a second per step
    with plait.Engine(db_url, worker=False) as client:
        run = client.start(shared, 0)
        wait_until(lambda: ledger.exists() and f"{run.id}:p1 " in ledger.read_text())
        leaving.send_signal(signal.SIGTERM)  # while p1 runs: it finishes p1, then hands the run back
        _, err = leaving.communicate(timeout=30)
        assert leaving.returncode == 0, err
        info = client.get_run(run.id).info()
        assert info.status == plait.RunStatus.PENDING
        assert [s.step_id for s in client.get_run(run.id).steps()] == ["p0", "p1"]
        staying = start_worker(db_url, ledger, "0")
        try:
            assert run.result(timeout=30) == 5
        finally:
            staying.send_signal(signal.SIGTERM)
            staying.communicate(timeout=30)
    assert set(ledger_keys(ledger).values()) == {1}  # nothing ran twice
