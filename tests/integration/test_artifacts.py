"""Artifacts: put by a step, read by later steps and by users, small inline, large in the blob store."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import plait
from plait.artifacts import INLINE_LIMIT
from plait.testing import FakeClock
from tests.conftest import run_sql

BIG = b"\x00\x01" * (INLINE_LIMIT // 2 + 10)  # just over the inline limit


class Report(BaseModel):
    title: str
    pages: int


@plait.step
def make(ctx: plait.Context, n: int) -> int:
    ctx.artifacts.put("notes.txt", "hello")
    ctx.artifacts.put("raw.bin", b"\xff\x00")
    ctx.artifacts.put("report", Report(title="Q3", pages=n))
    ctx.artifacts.put("rows.json", [{"a": 1}, {"a": 2}])
    ctx.artifacts.put("images/big.png", BIG, content_type="image/png")
    assert ctx.artifacts.get("notes.txt") == "hello"  # a step reads its own puts
    return n


@plait.step
def use_sync(ctx: plait.Context, n: int) -> dict[str, Any]:
    return {
        "notes": ctx.artifacts.get("notes.txt"),
        "report": ctx.artifacts.get("report"),
        "big": len(ctx.artifacts.get("images/big.png")),
    }


@plait.step
async def use_async(ctx: plait.Context, found: dict[str, Any]) -> dict[str, Any]:
    return {**found, "rows": await ctx.artifacts.aget("rows.json"), "raw": list(await ctx.artifacts.aget("raw.bin"))}


flow = plait.workflow("artifacts_flow", input=int).then(make).then(use_sync).then(use_async).commit()


@pytest.fixture
def blobs(tmp_path: Path) -> Path:
    return tmp_path / "blobs"


@pytest.fixture
def store(db_url: str, blobs: Path) -> Iterator[plait.Engine]:
    with plait.Engine(db_url, blobs=blobs.as_uri()) as engine:
        yield engine


def blob_files(blobs: Path) -> list[Path]:
    return [p for p in blobs.rglob("*") if p.is_file()] if blobs.exists() else []


def test_later_steps_and_users_read_what_a_step_put(store: plait.Engine, blobs: Path) -> None:
    run = store.start(flow, 7)
    out = run.result(timeout=20)
    assert out == {
        "notes": "hello",
        "report": {"title": "Q3", "pages": 7},
        "big": len(BIG),
        "rows": [{"a": 1}, {"a": 2}],
        "raw": [255, 0],
    }
    listed = {a.key: a for a in run.artifacts()}
    assert set(listed) == {"notes.txt", "raw.bin", "report", "rows.json", "images/big.png"}
    assert listed["images/big.png"].size == len(BIG) and listed["images/big.png"].content_type == "image/png"
    assert listed["notes.txt"].content_type.startswith("text/plain") and listed["notes.txt"].step_id == "make"
    assert listed["report"].content_type == "application/json"
    assert run.artifact("images/big.png") == BIG
    assert run.artifact("raw.bin") == b"\xff\x00"
    assert len(blob_files(blobs)) == 1  # only the large one left the database


def test_small_artifacts_live_in_the_database_and_large_ones_in_the_blob_store(
    store: plait.Engine, db_url: str
) -> None:
    run = store.start(flow, 1)
    run.result(timeout=20)
    rows = dict(run_sql(db_url, "SELECT key, blob IS NOT NULL FROM plait_artifacts WHERE run_id = ?", (run.id,)))
    assert rows == {"notes.txt": 0, "raw.bin": 0, "report": 0, "rows.json": 0, "images/big.png": 1} or rows == {
        "notes.txt": False,
        "raw.bin": False,
        "report": False,
        "rows.json": False,
        "images/big.png": True,
    }


def test_a_failed_attempt_keeps_no_artifact_and_prune_removes_its_orphan_blob(
    store: plait.Engine, db_url: str, blobs: Path
) -> None:
    @plait.step
    def half(ctx: plait.Context, n: int) -> int:
        ctx.artifacts.put("partial.bin", BIG)
        raise RuntimeError("crashed after writing the blob, before the commit")

    run = store.start(plait.workflow("half_done", input=int).then(half).commit(), 1)
    with pytest.raises(plait.RunFailed):
        run.result(timeout=20)
    assert run.artifacts() == []
    assert run_sql(db_url, "SELECT count(*) FROM plait_artifacts")[0][0] == 0
    assert len(blob_files(blobs)) == 1  # written before the (failed) commit: an orphan
    store.prune(0)
    assert blob_files(blobs) == []


def test_prune_deletes_artifacts_with_their_run_and_rerun_from_keeps_those_of_reused_steps(
    db_url: str, blobs: Path
) -> None:
    clock = FakeClock()
    with plait.Engine(db_url, blobs=str(blobs), clock=clock) as engine:
        first = engine.start(flow, 3)
        first.result(timeout=20)
        again = engine.rerun_from(first.id, "use_sync")
        assert again.result(timeout=20)["big"] == len(BIG)
        assert {a.key for a in again.artifacts()} == {a.key for a in first.artifacts()}
        clock.advance(seconds=10)
        engine.cancel(engine.start(flow, 9, delay=3600).id)  # ended just now: not pruned
        assert engine.prune(5) == 2
        assert run_sql(db_url, "SELECT count(*) FROM plait_artifacts")[0][0] == 0
        assert blob_files(blobs) == []
        with pytest.raises(plait.RunNotFound):
            engine.get_run(first.id).artifacts()


def test_rerun_keeps_a_shared_blob_when_only_the_source_run_is_pruned(db_url: str, blobs: Path) -> None:
    clock = FakeClock()
    with plait.Engine(db_url, blobs=str(blobs), clock=clock) as engine:
        first = engine.start(flow, 3)
        first.result(timeout=20)
        clock.advance(seconds=100)
        again = engine.rerun_from(first.id, "use_sync")
        again.result(timeout=20)
        assert engine.prune(50) == 1  # only the source ended before the cutoff
        assert again.artifact("images/big.png") == BIG


@pytest.mark.parametrize(
    "key", ["", "../x", "a/../../etc/passwd", "/abs", "a\x00b", "x" * 257, ".hidden", "a//b", "a\\b", "sp ace"]
)
def test_bad_keys_are_refused_with_a_code(store: plait.Engine, key: str) -> None:
    @plait.step
    def bad(ctx: plait.Context, n: int) -> int:
        ctx.artifacts.put(key, "x")
        return n

    run = store.start(plait.workflow("bad_key", input=int).then(bad).commit(), 1)
    with pytest.raises(plait.RunFailed) as caught:
        run.result(timeout=20)
    assert caught.value.error["code"] == "artifact.invalid"
    with pytest.raises(plait.ArtifactInvalid):
        store.get_run(run.id).artifact(key)


def test_unstorable_data_and_a_missing_key_have_codes(store: plait.Engine) -> None:
    @plait.step
    def odd(ctx: plait.Context, n: int) -> int:
        ctx.artifacts.put("obj", object())
        return n

    run = store.start(plait.workflow("odd_data", input=int).then(odd).commit(), 1)
    with pytest.raises(plait.RunFailed) as caught:
        run.result(timeout=20)
    assert caught.value.error["code"] == "artifact.invalid"
    with pytest.raises(plait.ArtifactNotFound):
        run.artifact("never-put")


def test_get_in_an_async_step_says_to_use_aget(store: plait.Engine) -> None:
    @plait.step
    async def wrong(ctx: plait.Context, n: int) -> int:
        ctx.artifacts.get("notes.txt")
        return n

    run = store.start(plait.workflow("async_get", input=int).then(make).then(wrong).commit(), 1)
    with pytest.raises(plait.RunFailed, match="aget"):
        run.result(timeout=20)


def test_large_artifacts_need_a_blob_store_on_postgres(postgres_url: str) -> None:
    with plait.Engine(postgres_url) as engine:
        run = engine.start(flow, 1)
        with pytest.raises(plait.RunFailed, match="blobs="):
            run.result(timeout=20)


def test_the_default_blob_store_is_next_to_the_sqlite_file(tmp_path: Path) -> None:
    with plait.Engine(f"sqlite:///{tmp_path / 'app.db'}") as engine:
        run = engine.start(flow, 2)
        run.result(timeout=20)
        assert run.artifact("images/big.png") == BIG
    assert blob_files(tmp_path / "app.db-blobs")


def test_a_remote_blob_store_without_fsspec_says_how_to_install_it(tmp_path: Path) -> None:
    if importlib.util.find_spec("fsspec") is not None:
        pytest.skip("fsspec is installed here")
    with pytest.raises(plait.StoreUnavailable, match="pip install fsspec"):
        plait.Engine(f"sqlite:///{tmp_path / 'x.db'}", blobs="s3://bucket/prefix")
