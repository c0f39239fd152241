"""Several real processes share one SQLite file: every run completes, every step runs once."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
from pathlib import Path

import plait
from tests.integration.worker_app import shared

APP = Path(__file__).with_name("worker_app.py")


def test_three_worker_processes_share_one_file_without_losing_or_repeating(tmp_path: Path) -> None:
    db, log = tmp_path / "shared.db", tmp_path / "steps.log"
    workers = [
        subprocess.Popen(
            [sys.executable, str(APP), str(db), str(log)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        with plait.Engine(f"sqlite:///{db}", worker=False) as client:
            runs = [client.start(shared, i) for i in range(60)]
            assert [run.result(timeout=60) for run in runs] == [i + 5 for i in range(60)]
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=30) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
        assert "locked" not in err
    counts = collections.Counter(log.read_text().split())
    assert len(counts) == 60 * 5
    assert set(counts.values()) == {1}
