"""Stored triggers read for runs that end: alone at once, together in one read while another is in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from plait.store import open_store
from plait.store.base import Store
from plait.store.triggers import SourceReads, TriggerRow, upsert


class HeldReads:
    """A real store whose trigger reads wait until ``release`` is set, and are counted."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.release = asyncio.Event()
        self.reads: list[tuple[Any, ...]] = []

    async def sql(self, query: str, params: Sequence[object] = (), *, write: bool = False) -> list[tuple[Any, ...]]:
        store = self.store  # the store as it was when the read began
        if not write and "plait_triggers" in query:
            self.reads.append(tuple(params))
            await self.release.wait()
        return await store.sql(query, params, write=write)


def trigger(id_: str, source: str) -> TriggerRow:
    return TriggerRow("default", id_, source, "target", ("succeeded",), False, 1.0)


def test_runs_ending_while_a_read_is_in_flight_share_the_next_read(db_url: str) -> None:
    async def scenario() -> None:
        store = open_store(db_url)
        await store.migrate()
        await upsert(store, trigger("t_a", "a"))
        held = HeldReads(store)
        reads = SourceReads(held, "default")  # type: ignore[arg-type]  # the Store protocol's sql, held
        first = asyncio.ensure_future(reads.for_source("a"))
        await asyncio.sleep(0)  # the first read is in flight, held
        await upsert(store, trigger("t_b", "b"))  # stored before the next two ask: they must see it
        later = [asyncio.ensure_future(reads.for_source(s)) for s in ("a", "b", "b")]
        await asyncio.sleep(0)
        held.release.set()
        assert [t.id for t in await first] == ["t_a"]
        assert [[t.id for t in await f] for f in later] == [["t_a"], ["t_b"], ["t_b"]]
        # One read for the first run, one for the three that asked meanwhile.
        assert held.reads == [("default", "a"), ("default", "a", "b")]
        # A run ending alone reads at once, without waiting for anyone.
        assert [t.id for t in await reads.for_source("b", alone=True)] == ["t_b"]
        assert len(held.reads) == 3
        await store.close()

    asyncio.run(scenario())


def test_runs_ending_in_one_turn_of_the_loop_share_one_read(db_url: str) -> None:
    async def scenario() -> None:
        store = open_store(db_url)
        await store.migrate()
        await upsert(store, trigger("t_a", "a"))
        held = HeldReads(store)
        held.release.set()
        reads = SourceReads(held, "default")  # type: ignore[arg-type]  # the Store protocol's sql, counted
        found = await asyncio.gather(*(reads.for_source(s) for s in ("a", "b", "a")))
        assert [[t.id for t in f] for f in found] == [["t_a"], [], ["t_a"]]
        assert held.reads == [("default", "a", "b")]
        await store.close()

    asyncio.run(scenario())


def test_a_failed_read_fails_only_its_callers_and_the_next_read_works(db_url: str) -> None:
    async def scenario() -> None:
        store = open_store(db_url)
        await store.migrate()
        await upsert(store, trigger("t_a", "a"))
        held = HeldReads(store)
        reads = SourceReads(held, "default")  # type: ignore[arg-type]  # the Store protocol's sql, held
        failing = asyncio.ensure_future(reads.for_source("a' OR 1=1 --"))  # text, never SQL: finds nothing
        await asyncio.sleep(0)
        waiting = asyncio.ensure_future(reads.for_source("a"))
        await asyncio.sleep(0)
        held.store = FailingStore()  # type: ignore[assignment]  # the next read meets a broken store
        held.release.set()
        assert await failing == []  # this read began before the store broke
        try:
            await waiting
        except RuntimeError as exc:
            assert "store down" in str(exc)
        else:
            raise AssertionError("the read of a broken store must raise to its caller")
        held.store = store  # the store is back: the next read works
        assert [t.id for t in await reads.for_source("a")] == ["t_a"]
        await store.close()

    asyncio.run(scenario())


class FailingStore:
    async def sql(self, query: str, params: Sequence[object] = (), *, write: bool = False) -> list[tuple[Any, ...]]:
        raise RuntimeError("store down")
