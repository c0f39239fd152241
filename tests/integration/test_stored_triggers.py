"""Completion triggers are stored: a worker that never called ``on_complete`` fires them, once per source run.

And schedules fire only inside their ``start_at`` / ``until`` window.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import plait
from plait.testing import FakeClock
from tests.integration.test_schedules import daily, fired_at
from tests.integration.trigger_app import billing, thanks

APP = Path(__file__).with_name("trigger_app.py")


def follow_ups(engine: plait.Engine) -> list[plait.Run]:
    return [run for run in engine.list_runs(workflow="thanks", limit=100).items]


def test_a_worker_that_never_declared_the_trigger_fires_it(db_url: str) -> None:
    with plait.Engine(db_url, worker=False) as client:
        trigger_id = client.on_complete(billing, start=thanks)
        assert [t.id for t in client.triggers()] == [trigger_id]
        runs = [client.start(billing, n) for n in range(3)]
    with plait.Engine(db_url) as worker, plait.Engine(db_url) as other:
        # Two workers, neither told about the trigger: each source run gets exactly one follow-up.
        worker.register(billing, thanks)
        other.register(billing, thanks)
        for run in runs:
            assert worker.get_run(run.id).result(timeout=20) in (0, 100, 200)
        worker.run_until_idle()
        other.run_until_idle()
        started = follow_ups(worker)
        assert sorted((run.metadata or {})["triggered_by"] for run in started) == sorted(run.id for run in runs)
        assert sorted(worker.get_run(run.id).result(timeout=20) for run in started) == [
            "thanks for 0",
            "thanks for 100",
            "thanks for 200",
        ]


def test_a_worker_process_fires_a_trigger_declared_elsewhere(db_url: str) -> None:
    with plait.Engine(db_url, worker=False) as client:
        client.on_complete(billing, start=thanks)
        run = client.start(billing, 4)
        proc = subprocess.Popen(
            [sys.executable, str(APP), db_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            assert run.result(timeout=30) == 400
            started = follow_ups(client)  # the follow-up commits before the source run ends: it is there now
            assert len(started) == 1
            assert client.get_run(started[0].id).result(timeout=30) == "thanks for 400"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
        assert len(follow_ups(client)) == 1


def test_removed_and_redeclared_triggers(engine: plait.Engine) -> None:
    engine.register(billing, thanks)
    engine.on_complete(billing, start=thanks, id="thank-them")
    engine.on_complete(billing, start=thanks, id="thank-them", statuses=("succeeded", "failed"))
    assert [(t.id, t.statuses) for t in engine.triggers()] == [("thank-them", ["succeeded", "failed"])]
    assert engine.remove_trigger("thank-them")
    assert not engine.remove_trigger("thank-them")
    assert engine.start(billing, 1).result(timeout=20) == 100
    engine.run_until_idle()
    assert follow_ups(engine) == []


def test_input_from_stays_with_the_processes_that_declared_it(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with plait.Engine(db_url, worker=False) as client:
        client.on_complete(billing, start=thanks, input_from=lambda run: 7)
        run = client.start(billing, 1)
    with plait.Engine(db_url) as worker:
        worker.register(billing, thanks)
        assert worker.get_run(run.id).result(timeout=20) == 100
        worker.run_until_idle()
        # The code of input_from is not in this process: it starts nothing rather than a wrong input.
        assert follow_ups(worker) == []
    assert "input_from this process never declared" in caplog.text


def test_a_schedule_fires_only_inside_its_window(db_url: str) -> None:
    clock = FakeClock(datetime(2030, 1, 1, tzinfo=UTC))
    start_at = datetime(2030, 1, 1, 3, tzinfo=UTC)
    until = datetime(2030, 1, 1, 6, tzinfo=UTC)
    with plait.Engine(db_url, clock=clock) as engine:
        made = engine.schedule(
            daily, cron="0 * * * *", input="w", id="window", start_at=start_at, until=until, catch_up="all"
        )
        assert made.next_fire_at == start_at  # a due time at start_at itself counts
        assert (made.start_at, made.until) == (start_at, until)
        for _ in range(10):
            clock.advance(hours=1)
            engine.run_until_idle()
        # Declared again at an app's next start: the window is kept, nothing new fires.
        engine.schedule(daily, cron="0 * * * *", input="w", id="window", start_at=start_at, until=until)
        clock.advance(hours=5)
        engine.run_until_idle()
        with pytest.raises(plait.InputValidationError, match="until must not be before start_at"):
            engine.schedule(daily, cron="0 * * * *", start_at=until, until=start_at, input="x")
        with pytest.raises(plait.InputValidationError, match="time-zone-aware"):
            engine.schedule(daily, cron="0 * * * *", start_at=datetime(2030, 1, 1), input="x")
    hours = [fired.hour for fired in fired_at(db_url, "window")]
    assert hours == [3, 4, 5, 6]


def test_a_window_with_skip_fires_the_latest_time_inside_it_after_downtime(db_url: str) -> None:
    clock = FakeClock(datetime(2030, 1, 1, tzinfo=UTC))
    with plait.Engine(db_url, clock=clock) as engine:
        engine.schedule(daily, cron="0 * * * *", input="s", id="late", until=datetime(2030, 1, 1, 2, tzinfo=UTC))
        clock.advance(hours=5)  # down from before the first due time until after the window closed
        engine.run_until_idle()
        clock.advance(hours=5)
        engine.run_until_idle()
    assert [fired.hour for fired in fired_at(db_url, "late")] == [2]
