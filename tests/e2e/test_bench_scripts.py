"""The benchmark scripts run as documented; without DBOS the comparison says what to do, not a traceback."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("dbos") is not None, reason="DBOS is installed here")
def test_compare_dbos_without_dbos_explains_how_to_install_it() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "compare_dbos.py")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "not installed" in done.stderr and "pip install" in done.stderr
    assert "Traceback" not in done.stderr


def test_steps_benchmark_runs_and_prints_its_ratios(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "steps.py"), "--runs", "5", "--steps", "3", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "raw durable commit" in done.stdout and "event log cost" in done.stdout


def test_documents_benchmark_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "documents.py"), "--blocks", "30", "--ops", "20", "--chain", "5",
         "--runs", "2", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "apply_ops" in done.stdout and "document / builder" in done.stdout


def test_anatomy_benchmark_runs_and_splits_a_step(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "anatomy.py"), "--runs", "3", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "one more step:" in done.stdout and "the run itself:" in done.stdout
    assert "WAL pages per commit, events=on" in done.stdout and "plait_steps" in done.stdout
    assert "µs per commit of 1 / 3 / 5 pages" in done.stdout
    assert "hand-off to a step thread and back" in done.stdout
