"""A step's commit that waited for its run's row lock numbers its events after what the lock's holder wrote.

On PostgreSQL a step commits in one statement, whose snapshot is taken before its fence waits for the run's
row lock. Another writer of the run's log holding that lock (``send_event`` does) adds an event meanwhile;
the step's events must come after it, not collide with its seq.
"""

from __future__ import annotations

import threading

import psycopg

import plait
from tests.conftest import postgres_base_url


def test_a_step_commit_that_waited_for_the_run_lock_numbers_its_events_after_the_holders(postgres_url: str) -> None:
    release = threading.Event()
    calls: list[int] = []

    @plait.step
    def held(x: int) -> int:
        release.wait(timeout=30)  # returns once the test holds the run's row lock
        calls.append(x)
        return x + 1

    flow = plait.workflow("seq_race", input=int).then(held).commit()
    schema = postgres_url.rsplit("schema=", 1)[1]
    with plait.Engine(postgres_url) as engine:
        run = engine.start(flow, 1)
        with psycopg.connect(postgres_base_url()) as other:
            other.execute(f'SET search_path TO "{schema}"')
            # Lock the run's row, as send_event does, and add an event to its log after its last one.
            other.execute("SELECT 1 FROM plait_runs WHERE id = %s FOR UPDATE", (run.id,))
            other.execute(
                "INSERT INTO plait_events (namespace, run_id, workflow_id, seq, type, payload, created_at) "
                "SELECT 'default', %s, 'seq_race', max(seq) + 1, 'run.noted', NULL, 0 FROM plait_events "
                "WHERE namespace = 'default' AND run_id = %s",
                (run.id, run.id),
            )
            release.set()
            with psycopg.connect(postgres_base_url(), autocommit=True) as watcher:
                for _ in range(3000):  # until the step's commit waits for our lock
                    waiting = watcher.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                        ("%INSERT INTO plait_steps%",),
                    ).fetchall()
                    if waiting:
                        break
                    threading.Event().wait(0.01)
                assert waiting, "the step's commit never waited for the run's row lock"
            other.commit()
        assert run.result(timeout=30) == 2
        assert calls == [1]  # committed the first time: not refused, handed back and run again
        events = list(run.events(follow=False))
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        types = [e.type for e in events]
        assert types.index("run.noted") < types.index("step.completed")
