"""Apps declare their schedules at every start: declaring again keeps the schedule's state."""

from __future__ import annotations

from datetime import UTC, datetime

import plait
from plait.testing import FakeClock
from tests.conftest import run_sql

START = datetime(2030, 1, 1, tzinfo=UTC)


@plait.step
def report(label: str) -> str:
    return f"report {label}"


hourly = plait.workflow("hourly_report", input=str).then(report).commit()


def fired(db_url: str, schedule_id: str) -> list[str]:
    """The input of each run a schedule fired by its cron, in due-time order."""
    rows = run_sql(
        db_url,
        "SELECT idempotency_key, input FROM plait_runs WHERE idempotency_key LIKE ?",
        (f"schedule:{schedule_id}:%",),
    )
    return [text for _, text in sorted(rows, key=lambda row: int(row[0].rsplit(":", 1)[1]))]


def declare(engine: plait.Engine, label: str = "a", cron: str = "0 * * * *") -> None:
    """What an app runs at start-up, every time."""
    engine.schedule(hourly, cron=cron, input=label, id="skip", catch_up="skip")
    engine.schedule(hourly, cron=cron, input=label, id="all", catch_up="all")


def test_redeclaring_at_start_up_keeps_catch_up(db_url: str) -> None:
    clock = FakeClock(START)
    with plait.Engine(db_url, clock=clock) as engine:
        declare(engine)
        first = {s.id: s.next_fire_at for s in engine.schedules()}
    clock.advance(hours=5, minutes=30)  # five due times pass while no engine runs
    with plait.Engine(db_url, clock=clock) as engine:
        declare(engine)
        assert {s.id: s.next_fire_at for s in engine.schedules()} == first  # state kept, not recomputed
        engine.run_until_idle()
        assert fired(db_url, "skip") == ['"a"']  # the latest missed time, once
        assert fired(db_url, "all") == ['"a"'] * 5  # every missed time
        declare(engine)  # declaring again changes nothing that already fired
        engine.run_until_idle()
        assert len(fired(db_url, "all")) == 5


def test_redeclaring_keeps_a_paused_schedule_paused(db_url: str) -> None:
    clock = FakeClock(START)
    with plait.Engine(db_url, clock=clock) as engine:
        declare(engine)
        engine.pause_schedule("all")
    clock.advance(hours=3, minutes=30)
    with plait.Engine(db_url, clock=clock) as engine:
        declare(engine)
        assert {s.id: s.paused for s in engine.schedules()} == {"all": True, "skip": False}
        engine.run_until_idle()
        assert fired(db_url, "all") == []
        assert len(fired(db_url, "skip")) == 1


def test_a_new_input_applies_to_the_missed_times_and_a_new_cron_counts_from_now(db_url: str) -> None:
    clock = FakeClock(START)
    with plait.Engine(db_url, clock=clock) as engine:
        declare(engine)
    clock.advance(hours=2, minutes=30)
    with plait.Engine(db_url, clock=clock) as engine:
        engine.schedule(hourly, cron="0 * * * *", input="b", id="all", catch_up="all")  # new input only
        changed = engine.schedule(hourly, cron="30 * * * *", input="a", id="skip")  # new cron
        assert changed.next_fire_at == datetime(2030, 1, 1, 3, 30, tzinfo=UTC)  # from now, not from 01:00
        engine.run_until_idle()
        assert fired(db_url, "all") == ['"b"', '"b"']  # 01:00 and 02:00, with the new input
        assert fired(db_url, "skip") == []  # the old cron's missed times went with it
        clock.advance(hours=1)
        engine.run_until_idle()
        assert fired(db_url, "skip") == ['"a"']
