"""Group commit on PostgreSQL: fenced writes made while every write connection is busy share one transaction.

Each is still fenced by its own lease. (A write made while a connection is free goes at once, alone.)

One run's write failing (its lease taken over, its row locked elsewhere, its statement raising) must fail or
delay only that run's write: the others commit, and nothing of them is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

import psycopg
import pytest

from plait.errors import LeaseLost, StoreUnavailable
from plait.store.base import Lease
from plait.store.postgres import PostgresStore
from plait.store.postgres_group import GroupCommit
from tests.conftest import postgres_base_url
from tests.store.test_stores import new_run, step_row

RUN_IDS = [f"r{i}" for i in range(5)]


async def claimed_runs(store: PostgresStore) -> dict[str, Lease]:
    """RUN_IDS created running under one owner: each run's lease."""
    await store.migrate()
    leases = {}
    for run_id in RUN_IDS:
        row, _ = await store.create_run(new_run(run_id))
        leases[run_id] = Lease(run_id, row.lease_token, "default")
    return leases


def spy_groups(store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every group sent as one transaction, as it is sent."""
    sizes: list[int] = []
    original = GroupCommit._write_group

    async def write_group(self: GroupCommit, group: list[Any]) -> None:
        sizes.append(len(group))
        await original(self, group)

    monkeypatch.setattr(GroupCommit, "_write_group", write_group)
    return sizes


async def while_busy(store: PostgresStore, writes: Sequence[Awaitable[None]]) -> list[asyncio.Future[None]]:
    """``writes`` started while every write connection is busy (as in a wave of runs ending): they queue."""
    slots = store._group._slots
    taken = 0
    while not slots.locked():
        await slots.acquire()
        taken += 1
    started: list[asyncio.Future[None]] = [asyncio.ensure_future(write) for write in writes]
    await asyncio.sleep(0)  # each reaches the queue
    for _ in range(taken):
        slots.release()
    return started


async def outcomes(store: PostgresStore, writes: Sequence[Awaitable[None]]) -> list[BaseException | None]:
    """Each write's error (None when it committed), all made while every write connection is busy."""
    return list(await asyncio.gather(*await while_busy(store, writes), return_exceptions=True))


def statuses(rows: list[tuple[Any, ...]]) -> dict[str, str]:
    return {row[0]: row[1] for row in rows}


def test_runs_ending_together_commit_once_and_a_taken_over_lease_fails_only_its_run(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        store = PostgresStore(postgres_url)
        leases = await claimed_runs(store)
        groups = spy_groups(store, monkeypatch)
        # Another worker took r2 over (its lease expired): its token moved on.
        await store.sql("UPDATE plait_runs SET lease_token = lease_token + 1, owner = 'other:2:2' WHERE id = 'r2'")
        errors = await outcomes(
            store,
            [
                store.finish_run(lease, "succeeded", "2", None, 5.0, step_row(run_id, "last"))
                for run_id, lease in leases.items()
            ],
        )
        assert groups == [5]
        assert [type(e) if e else None for e in errors] == [None, None, LeaseLost, None, None]
        rows = await store.sql("SELECT id, status, owner, xmin::text FROM plait_runs ORDER BY id")
        assert statuses(rows) == {"r0": "succeeded", "r1": "succeeded", "r2": "running", "r3": "succeeded",
                                  "r4": "succeeded"}  # fmt: skip
        assert rows[2][2] == "other:2:2"
        assert len({row[3] for row in rows if row[0] != "r2"}) == 1  # one transaction wrote all four ends
        steps = await store.sql("SELECT run_id FROM plait_steps ORDER BY run_id")
        assert [s[0] for s in steps] == ["r0", "r1", "r3", "r4"]
        ended = await store.sql("SELECT run_id FROM plait_events WHERE type = 'run.completed' ORDER BY run_id")
        assert ended == []  # finish_run writes only the events it is given; none were
        await store.close()

    asyncio.run(scenario())


def test_a_run_locked_elsewhere_does_not_hold_up_its_group_and_commits_once_the_lock_goes(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = postgres_url.rsplit("schema=", 1)[1]

    async def scenario() -> None:
        store = PostgresStore(postgres_url)
        leases = await claimed_runs(store)
        groups = spy_groups(store, monkeypatch)
        async with await psycopg.AsyncConnection.connect(postgres_base_url()) as other:
            await other.execute(f'SET search_path TO "{schema}"')
            # Lock r3's row, as a send_event or another worker's heartbeat does, until we commit.
            await other.execute("SELECT 1 FROM plait_runs WHERE id = 'r3' FOR UPDATE")
            made = [store.record_step(lease, step_row(r, "a")) for r, lease in leases.items()]
            writes = dict(zip(leases, await while_busy(store, made), strict=True))
            others = [writes[run_id] for run_id in RUN_IDS if run_id != "r3"]
            done, _ = await asyncio.wait(others, timeout=10)
            assert done == set(others) and not writes["r3"].done()  # the others did not wait for r3's lock
            assert groups == [5]
            await other.commit()
        await asyncio.wait_for(writes["r3"], timeout=10)  # written on its own once the lock was released
        steps = await store.sql("SELECT run_id FROM plait_steps ORDER BY run_id")
        assert [s[0] for s in steps] == RUN_IDS
        await store.close()

    asyncio.run(scenario())


def test_a_write_that_raises_fails_alone_and_the_rest_of_its_group_commits(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        store = PostgresStore(postgres_url)
        leases = await claimed_runs(store)
        await store.record_step(leases["r1"], step_row("r1", "a"))
        groups = spy_groups(store, monkeypatch)
        # r1's step "a" attempt 1 is stored already: writing it again violates the steps' primary key,
        # which rolls the whole group's transaction back.
        errors = await outcomes(store, [store.record_step(lease, step_row(r, "a")) for r, lease in leases.items()])
        assert groups == [5]
        assert [type(e) if e else None for e in errors] == [None, StoreUnavailable, None, None, None]
        assert "plait_steps" in str(errors[1])
        steps = await store.sql("SELECT run_id, count(*) FROM plait_steps GROUP BY run_id ORDER BY run_id")
        assert steps == [(run_id, 1) for run_id in RUN_IDS]
        await store.close()

    asyncio.run(scenario())


def test_a_write_cancelled_before_its_group_is_sent_is_not_written(postgres_url: str) -> None:
    async def scenario() -> None:
        store = PostgresStore(postgres_url)
        leases = await claimed_runs(store)
        writes = await while_busy(store, [store.record_step(lease, step_row(r, "a")) for r, lease in leases.items()])
        writes[0].cancel()  # its run stopped while it waited, before the group went out
        results = await asyncio.gather(*writes, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError) and results[1:] == [None] * 4
        steps = await store.sql("SELECT run_id FROM plait_steps ORDER BY run_id")
        assert [s[0] for s in steps] == RUN_IDS[1:]
        await store.close()

    asyncio.run(scenario())


def test_a_write_made_while_a_connection_is_free_goes_at_once_alone(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        store = PostgresStore(postgres_url)
        leases = await claimed_runs(store)
        groups = spy_groups(store, monkeypatch)
        errors = await asyncio.gather(*(store.record_step(lease, step_row(r, "a")) for r, lease in leases.items()))
        assert errors == [None] * 5 and groups == []  # eight write connections: each went on its own
        steps = await store.sql("SELECT run_id FROM plait_steps ORDER BY run_id")
        assert [s[0] for s in steps] == RUN_IDS
        await store.close()

    asyncio.run(scenario())
