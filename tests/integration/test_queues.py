"""Queue limits hold across real worker processes, not per process."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import plait
from tests.conftest import run_sql
from tests.integration.queue_app import ALL, Order

APP = Path(__file__).with_name("queue_app.py")


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger"


@pytest.fixture
def four_workers(db_url: str, ledger: Path) -> Iterator[list[subprocess.Popen[str]]]:
    with plait.Engine(db_url, worker=False) as client:
        client.register(*ALL)  # writes the queue limits before any run exists
        client.list_runs()
    workers = [
        subprocess.Popen(
            [sys.executable, str(APP), db_url, str(ledger)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    for worker in workers:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    yield workers
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        _, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err


def intervals(ledger: Path, label: str) -> list[tuple[float, float, int]]:
    rows = [line.split() for line in ledger.read_text().splitlines()]
    return [(float(start), float(end), int(pid)) for name, start, end, pid in rows if name == label]


def most_at_once(spans: list[tuple[float, float, int]]) -> int:
    events = sorted([(start, 1) for start, _, _ in spans] + [(end, -1) for _, end, _ in spans])
    peak = current = 0
    for _, change in events:
        current += change
        peak = max(peak, current)
    return peak


def run_all(db_url: str, workflow_id: str, inputs: list[object]) -> None:
    with plait.Engine(db_url, worker=False) as client:
        client.register(*ALL)
        runs = [client.start(workflow_id, value) for value in inputs]
        for run in runs:
            run.result(timeout=120)


@pytest.mark.timeout(120)
def test_global_concurrency_of_three_holds_across_four_processes(
    db_url: str, ledger: Path, four_workers: list[subprocess.Popen[str]]
) -> None:
    run_all(db_url, "limited", list(range(18)))
    spans = intervals(ledger, "limited")
    assert len(spans) == 18
    assert most_at_once(spans) == 3
    assert len({pid for _, _, pid in spans}) >= 2  # the work really was shared


@pytest.mark.timeout(120)
def test_rate_limit_of_ten_per_second_holds_over_five_seconds(
    db_url: str, ledger: Path, four_workers: list[subprocess.Popen[str]]
) -> None:
    run_all(db_url, "rated", list(range(50)))
    assert len(intervals(ledger, "rated")) == 50
    # The limit governs when the queue admits a run: its started_at, set in the claiming transaction.
    rows = run_sql(db_url, "SELECT started_at FROM plait_runs WHERE workflow_id = 'rated' ORDER BY started_at")
    starts = [float(row[0]) for row in rows]
    busiest = max(sum(1 for t in starts if s <= t < s + 1.0) for s in starts)
    assert busiest <= 10
    assert starts[-1] - starts[0] >= 4.0  # 50 starts at 10 per second take at least 4 s


@pytest.mark.timeout(120)
def test_per_key_concurrency_of_one_holds_per_customer(
    db_url: str, ledger: Path, four_workers: list[subprocess.Popen[str]]
) -> None:
    orders = [Order(customer=f"c{i % 3}", n=i) for i in range(12)]
    run_all(db_url, "per_customer", list(orders))
    everyone: list[tuple[float, float, int]] = []
    for customer in ("c0", "c1", "c2"):
        spans = intervals(ledger, f"customer:{customer}")
        assert len(spans) == 4
        assert most_at_once(spans) == 1
        everyone += spans
    assert most_at_once(everyone) >= 2  # different customers did run at the same time


@pytest.mark.timeout(120)
def test_step_queue_limits_a_step_across_processes(
    db_url: str, ledger: Path, four_workers: list[subprocess.Popen[str]]
) -> None:
    run_all(db_url, "step_limited", list(range(12)))
    spans = intervals(ledger, "scarce")
    assert len(spans) == 12
    assert most_at_once(spans) == 2
