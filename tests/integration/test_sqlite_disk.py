"""SQLite on a real, small disk: a full disk and a database file deleted or replaced under a running engine.

The full disk is a tmpfs of a few hundred KB mounted for the test (needs root;
skipped with the reason otherwise).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import plait
from plait.testing import FakeClock


@plait.step
def shout(text: str) -> str:
    return text.upper()


shouting = plait.workflow("shouting", input=str, output=str).then(shout).commit()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr.decode(errors="replace").strip() if isinstance(exc, subprocess.CalledProcessError) else exc
        pytest.skip(f"mounting a small tmpfs needs root (or CAP_SYS_ADMIN): {detail}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk has no space left; returns it (delete it to free the space)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        chunk = b"x" * 4096
        while True:
            try:
                if os.write(fd, chunk) < len(chunk):
                    chunk = b"x"
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                return filler
    finally:
        os.close(fd)


def wait_for_log(caplog: pytest.LogCaptureFixture, text: str) -> None:
    deadline = time.monotonic() + 30
    while not any(text in record.getMessage() for record in caplog.records):
        assert time.monotonic() < deadline, f"no log line with {text!r}"
        time.sleep(0.01)  # the engine's thread is working on it


def test_full_disk_refuses_new_runs_and_every_accepted_run_completes_once_space_returns(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="plait")
    clock = FakeClock()
    with plait.Engine(f"sqlite:///{small_disk / 'plait.db'}", clock=clock, poll_interval=0.05) as engine:
        engine.register(shouting)
        accepted = [engine.start(shouting, f"early {i}", delay=timedelta(minutes=1)) for i in range(3)]
        filler = fill(small_disk)

        with pytest.raises(plait.StoreUnavailable, match="disk is full") as caught:
            engine.start(shouting, "refused " * 2000)
        assert caught.value.code == "store.unavailable"

        # The accepted runs fall due while the disk is full: the worker's claims fail, and it keeps trying.
        clock.advance(minutes=2)
        wait_for_log(caplog, "store unavailable")

        filler.unlink()
        late = engine.start(shouting, "late")
        assert late.result(timeout=30) == "LATE"
        assert [run.result(timeout=30) for run in accepted] == ["EARLY 0", "EARLY 1", "EARLY 2"]
        assert len(engine.list_runs(status="succeeded").items) == 4


def remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def test_deleted_database_file_refuses_new_runs(tmp_path: Path) -> None:
    path = tmp_path / "plait.db"
    with plait.Engine(f"sqlite:///{path}") as engine:
        assert engine.start(shouting, "before").result(timeout=10) == "BEFORE"
        remove_database(path)
        with pytest.raises(plait.StoreUnavailable, match="was deleted") as caught:
            engine.start(shouting, "after")
        assert "restart" in caught.value.message
        # It stays refused: nothing is acknowledged into the unlinked file.
        with pytest.raises(plait.StoreUnavailable):
            engine.start(shouting, "again")
    with plait.Engine(f"sqlite:///{path}", worker=False) as reopened:
        assert reopened.list_runs().items == []


def test_replaced_database_file_refuses_new_runs(tmp_path: Path) -> None:
    path = tmp_path / "plait.db"
    with plait.Engine(f"sqlite:///{path}") as engine:
        assert engine.start(shouting, "before").result(timeout=10) == "BEFORE"
        with plait.Engine(f"sqlite:///{tmp_path / 'other.db'}", worker=False):
            pass
        remove_database(path)
        shutil.copy(tmp_path / "other.db", path)
        with pytest.raises(plait.StoreUnavailable, match="replaced"):
            engine.start(shouting, "after")
