"""PostgreSQL restarts under running workers: they log the outage, retry, and carry on; nothing is lost."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

import plait
from tests.integration.test_many_processes import assert_each_step_committed_once, ledger_keys, start_worker
from tests.integration.worker_app import shared


def restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.timeout(240)
@pytest.mark.skipif(shutil.which("pg_ctlcluster") is None, reason="needs pg_ctlcluster to restart the local server")
def test_workers_ride_out_a_postgres_restart(postgres_url: str, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    workers = [start_worker(postgres_url, ledger, "0.05", "3.0") for _ in range(2)]
    logs: list[list[str]] = [[] for _ in workers]
    readers = [
        threading.Thread(target=lambda w=w, log=log: log.extend(w.stderr or []), daemon=True)
        for w, log in zip(workers, logs, strict=True)
    ]
    for reader in readers:
        reader.start()
    try:
        with plait.Engine(postgres_url, worker=False) as client:
            runs = [client.start(shared, i) for i in range(100)]
            restart_postgres()
            assert [run.result(timeout=120) for run in runs] == [i + 5 for i in range(100)]
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=60)
        for reader in readers:
            reader.join(timeout=10)
        for worker in workers:
            for pipe in (worker.stdout, worker.stderr):
                if pipe is not None:
                    pipe.close()
    assert_each_step_committed_once(postgres_url, 100)
    assert len(ledger_keys(ledger)) == 500
    outage_lines = [line for log in logs for line in log if "unavailable" in line or "PostgreSQL" in line]
    assert outage_lines, "the workers did not log the outage"
