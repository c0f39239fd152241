"""Cron schedules and tick() under the fake clock, and two real scheduler processes on one database."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import plait
from plait.testing import FakeClock
from tests.conftest import run_sql

PARIS = ZoneInfo("Europe/Paris")


@plait.step
def report(day: str) -> str:
    return f"report {day}"


daily = plait.workflow("daily_report", input=str).then(report).commit()


def fired_at(db_url: str, schedule_id: str) -> list[datetime]:
    rows = run_sql(
        db_url, "SELECT idempotency_key FROM plait_runs WHERE idempotency_key LIKE ?", (f"schedule:{schedule_id}:%",)
    )
    return sorted(datetime.fromtimestamp(int(key.rsplit(":", 1)[1]), UTC) for (key,) in rows)


def test_weekday_six_am_in_paris_fires_at_the_right_instants_across_dst(db_url: str) -> None:
    clock = FakeClock(datetime(2030, 3, 20, tzinfo=UTC))
    with plait.Engine(db_url, clock=clock) as engine:
        engine.schedule(daily, cron="0 6 * * 1-5", timezone="Europe/Paris", input="ops", id="weekday")
        for _ in range(24 * 21):  # three weeks, hour by hour
            clock.advance(hours=1)
            engine.run_until_idle()
        assert all(r.status == plait.RunStatus.SUCCEEDED for r in engine.list_runs(limit=100).items)
    fired = fired_at(db_url, "weekday")
    days = [datetime(2030, 3, 20) + timedelta(days=n) for n in range(21)]  # 20 March to 9 April
    expected = [datetime(d.year, d.month, d.day, 6, tzinfo=PARIS).astimezone(UTC) for d in days if d.weekday() < 5]
    assert fired == expected
    assert fired[0].hour == 5 and fired[-1].hour == 4  # CET before 31 March, CEST after


def test_paused_schedules_skip_and_catch_up_policies(db_url: str) -> None:
    clock = FakeClock(datetime(2030, 1, 1, tzinfo=UTC))
    with plait.Engine(db_url, clock=clock) as engine:
        engine.schedule(daily, cron="0 * * * *", input="a", id="hourly_skip")
        engine.schedule(daily, cron="0 * * * *", input="b", id="hourly_all", catch_up="all")
        engine.schedule(daily, cron="0 * * * *", input="c", id="hourly_paused")
        engine.pause_schedule("hourly_paused")
        with pytest.raises(plait.InputValidationError, match="invalid cron"):
            engine.schedule(daily, cron="61 * * * *")
        with pytest.raises(plait.InputValidationError, match="unknown time zone"):
            engine.schedule(daily, cron="0 6 * * *", timezone="Mars/Olympus")
        with pytest.raises(plait.InputValidationError):
            engine.schedule(daily, cron="0 6 * * *", input=42)
    clock.advance(hours=5, minutes=30)  # five due times pass while no engine runs
    with plait.Engine(db_url, clock=clock) as engine:
        engine.register(daily)
        engine.run_until_idle()
        assert len(fired_at(db_url, "hourly_skip")) == 1  # only the latest missed time
        assert len(fired_at(db_url, "hourly_all")) == 5  # every missed time
        assert fired_at(db_url, "hourly_paused") == []
        engine.resume_schedule("hourly_paused")
        clock.advance(hours=1)
        engine.run_until_idle()
        assert len(fired_at(db_url, "hourly_paused")) == 1
        run_id = engine.trigger_schedule("hourly_skip")
        assert engine.get_run(run_id).result(timeout=10) == "report a"
        assert {s.id for s in engine.schedules()} == {"hourly_skip", "hourly_all", "hourly_paused"}
        assert engine.remove_schedule("hourly_all") is True


def test_tick_drives_a_workflow_with_sleeps_to_completion(db_url: str) -> None:
    @plait.step
    def bump(x: int) -> int:
        return x + 1

    flow = (
        plait.workflow("ticked", input=int)
        .then(bump)
        .sleep(timedelta(minutes=5))
        .then(bump.with_options(id="bump2"))
        .sleep(timedelta(minutes=5))
        .then(bump.with_options(id="bump3"))
        .commit()
    )
    clock = FakeClock()
    with plait.Engine(db_url, clock=clock, worker=False) as host:
        host.register(flow)
        run = host.start(flow, 0)
        summaries = []
        for _ in range(20):  # one request a minute, as a platform's cron would send
            summaries.append(host.tick(max_items=10, budget=5))
            if run.status == plait.RunStatus.SUCCEEDED:
                break
            clock.advance(minutes=1)
        assert run.result(timeout=1) == 3
        assert sum(s.runs_processed for s in summaries) == 3  # started, woke once, woke again
        assert summaries[-1].more_ready is False


@pytest.mark.timeout(120)
def test_two_scheduler_processes_fire_each_second_exactly_once(db_url: str, tmp_path: Path) -> None:
    app = tmp_path / "sched_app.py"
    app.write_text(
        "import os, sys\n"
        "sys.path.insert(0, os.getcwd())\n"
        "import plait\n"
        "from tests.integration.test_schedules import daily\n"
        "engine = plait.Engine(sys.argv[1], poll_interval=0.05)\n"
        "engine.register(daily)\n"
        "print('ready', flush=True)\n"
        "engine.work(grace=1)\n"
    )
    with plait.Engine(db_url, worker=False) as client:
        client.schedule(daily, cron="* * * * * *", input="tick", id="every_second")  # seconds field
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen(
            [sys.executable, str(app), db_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root
        )
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(8)  # eight real seconds of a per-second schedule, with two schedulers racing for each
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    keys = [
        row[0]
        for row in run_sql(
            db_url, "SELECT idempotency_key FROM plait_runs WHERE idempotency_key LIKE 'schedule:every_second:%'"
        )
    ]
    seconds = sorted(int(key.rsplit(":", 1)[1]) for key in keys)
    assert max(Counter(seconds).values()) == 1  # never twice
    assert seconds == list(range(seconds[0], seconds[-1] + 1))  # never a gap
    assert len(seconds) >= 5


def test_completion_triggers_start_follow_ups_exactly_once(engine: plait.Engine) -> None:
    @plait.step
    def invoice(order: int) -> int:
        if order < 0:
            raise ValueError("negative order")
        return order * 100

    @plait.step
    def thank(amount: int) -> str:
        return f"thanks for {amount}"

    @plait.step
    def alert(message: str) -> str:
        return f"alert: {message}"

    billing = plait.workflow("billing", input=int).then(invoice).commit()
    thanks = plait.workflow("thanks", input=int).then(thank).commit()
    alerts = plait.workflow("alerts", input=str).then(alert).commit()
    engine.on_complete(billing, start=thanks)
    engine.on_complete(
        billing, start=alerts, statuses=("failed",), input_from=lambda run: f"{run.id} {(run.error or {})['message']}"
    )
    engine.on_complete(billing, start=thanks, id="broken", input_from=lambda run: 1 / 0)
    with pytest.raises(plait.InputValidationError):
        engine.on_complete(billing, start=thanks, statuses=("done",))
    good = engine.start(billing, 3)
    assert good.result(timeout=10) == 300
    bad = engine.start(billing, -1)
    with pytest.raises(plait.RunFailed):
        bad.result(timeout=10)
    engine.run_until_idle()
    followed = {r.workflow_id: r for r in engine.list_runs(limit=100).items if r.workflow_id != "billing"}
    assert set(followed) == {"thanks", "alerts"}
    assert engine.get_run(followed["thanks"].id).result(timeout=10) == "thanks for 300"
    assert engine.get_run(followed["alerts"].id).result(timeout=10).startswith(f"alert: {bad.id} ValueError")
    assert followed["thanks"].idempotency_key == f"on_complete:billing-to-thanks:{good.id}"
    assert followed["thanks"].metadata == {"triggered_by": good.id, "trigger": "billing-to-thanks"}
