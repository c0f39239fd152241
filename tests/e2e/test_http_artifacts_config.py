"""Step config and artifacts over HTTP, through a real server and client, on both backends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

import plait
from plait.http import create_app
from plait.store import tokens as token_table
from tests.e2e.servers import serving


class Settings(BaseModel):
    greeting: str = "hello"


@plait.step(config=Settings)
def render(ctx: plait.Context, name: str) -> str:
    page = f"<h1>{ctx.config.greeting} {name}</h1>"
    ctx.artifacts.put("page.html", page, content_type="text/html")
    ctx.artifacts.put("big/data.bin", b"z" * 70_000)
    ctx.artifacts.put("meta", {"name": name})
    return page


site = plait.workflow("site", input=str).then(render).commit()


@pytest.fixture
def served(db_url: str, tmp_path: Path) -> Iterator[tuple[str, plait.Engine]]:
    with plait.Engine(db_url, blobs=str(tmp_path / "blobs")) as engine:
        engine.register(site)
        with serving(create_app(engine)) as url:
            yield url, engine


def start(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return client.post("/api/workflows/site/runs", json=body)


def test_config_is_accepted_at_start_and_shown_on_the_run(served: tuple[str, plait.Engine]) -> None:
    url, engine = served
    with httpx.Client(base_url=url, timeout=10) as client:
        started = start(client, {"input": "ada", "config": {"render": {"greeting": "hi"}}})
        assert started.status_code == 201, started.text
        run_id = started.json()["id"]
        assert started.json()["config"] == {"render": {"greeting": "hi"}}
        engine.get_run(run_id).result(timeout=20)
        detail = client.get(f"/api/runs/{run_id}").json()
        assert detail["run"]["config"] == {"render": {"greeting": "hi"}}
        assert detail["run"]["output"] == "<h1>hi ada</h1>"
        rerun = client.post(f"/api/runs/{run_id}/rerun", json={"from_step": "render", "config": {"render": {}}})
        assert rerun.status_code == 201 and rerun.json()["config"] == {"render": {"greeting": "hi"}}


def test_bad_config_over_http_is_a_422_and_creates_no_run(served: tuple[str, plait.Engine]) -> None:
    url, _ = served
    bad: list[Any] = [{"render": {"greeting": 5}}, {"nope": {}}, {"render": "x"}, {"a\x00": {}}]
    with httpx.Client(base_url=url, timeout=10) as client:
        for config in bad:
            answer = start(client, {"input": "ada", "config": config})
            assert answer.status_code == 422, answer.text
            assert answer.json()["error"]["code"] == "input.invalid"
        assert client.get("/api/runs").json()["items"] == []


def test_artifacts_are_listed_and_served_with_their_content_type(served: tuple[str, plait.Engine]) -> None:
    url, engine = served
    with httpx.Client(base_url=url, timeout=10) as client:
        run_id = start(client, {"input": "ada"}).json()["id"]
        engine.get_run(run_id).result(timeout=20)
        listed = client.get(f"/api/runs/{run_id}/artifacts")
        assert listed.status_code == 200
        assert {a["key"]: a["size"] for a in listed.json()} == {"page.html": 18, "big/data.bin": 70_000, "meta": 14}
        page = client.get(f"/api/runs/{run_id}/artifacts/page.html")
        assert page.status_code == 200 and page.text == "<h1>hello ada</h1>"
        assert page.headers["content-type"].startswith("text/html")
        assert (
            page.headers["x-content-type-options"] == "nosniff" and "attachment" in page.headers["content-disposition"]
        )
        big = client.get(f"/api/runs/{run_id}/artifacts/big/data.bin")
        assert big.status_code == 200 and big.content == b"z" * 70_000
        assert client.get(f"/api/runs/{run_id}/artifacts/meta").json() == {"name": "ada"}


def test_artifact_errors_are_structured_4xx(served: tuple[str, plait.Engine]) -> None:
    url, engine = served
    with httpx.Client(base_url=url, timeout=10) as client:
        run_id = start(client, {"input": "ada"}).json()["id"]
        engine.get_run(run_id).result(timeout=20)
        cases = [
            (f"/api/runs/{run_id}/artifacts/missing", 404, "artifact.not_found"),
            (f"/api/runs/{run_id}/artifacts/..%2F..%2Fetc%2Fpasswd", 422, "artifact.invalid"),
            (f"/api/runs/{run_id}/artifacts/a%00b", 400, "request.invalid"),  # the guard refuses NUL in any URL
            (f"/api/runs/{run_id}/artifacts/{'k' * 300}", 422, "artifact.invalid"),
            ("/api/runs/nope/artifacts", 404, "run.not_found"),
            ("/api/runs/nope/artifacts/page.html", 404, "run.not_found"),
        ]
        for path, status, code in cases:
            answer = client.get(path)
            assert answer.status_code == status, (path, answer.text)
            assert answer.json()["error"]["code"] == code


def test_another_namespace_cannot_read_artifacts(served: tuple[str, plait.Engine]) -> None:
    url, engine = served
    _, admin = engine._loop.run(token_table.create(engine._store, "default", "admin", time.time()))
    _, other = engine._loop.run(token_table.create(engine._store, "other", "read", time.time()))
    with httpx.Client(base_url=url, timeout=10) as client:
        started = client.post(
            "/api/workflows/site/runs", json={"input": "ada"}, headers={"Authorization": f"Bearer {admin}"}
        )
        run_id = started.json()["id"]
        engine.get_run(run_id).result(timeout=20)
        mine = client.get(f"/api/runs/{run_id}/artifacts/meta", headers={"Authorization": f"Bearer {admin}"})
        assert mine.status_code == 200
        for path in (f"/api/runs/{run_id}/artifacts", f"/api/runs/{run_id}/artifacts/meta"):
            answer = client.get(path, headers={"Authorization": f"Bearer {other}"})
            assert answer.status_code == 404 and answer.json()["error"]["code"] == "run.not_found"
