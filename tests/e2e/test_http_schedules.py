"""``/api/schedules`` (DESIGN: REST for schedules) through a real server: list, pause, resume, trigger."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

import plait
from plait.http import create_app
from tests.e2e.servers import serving
from tests.e2e.test_http import Api, checkout


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    with plait.Engine(db_url) as engine:
        engine.register(checkout)
        engine.schedule(
            checkout, cron="0 6 * * 1-5", timezone="Europe/Paris", input={"customer": "cron", "amount": 1}, id="daily"
        )
        with serving(create_app(engine)) as url:
            yield Api(url, engine)


def test_list_pause_resume_and_trigger_a_schedule(api: Api) -> None:
    with httpx.Client(base_url=api.url, timeout=10) as client:
        listed = client.get("/api/schedules").json()
        assert [(s["id"], s["workflow_id"], s["paused"]) for s in listed] == [("daily", "checkout", False)]
        assert client.post("/api/schedules/daily/pause").json()["paused"] is True
        assert api.engine.schedules()[0].paused is True
        assert client.post("/api/schedules/daily/resume").json()["paused"] is False
        triggered = client.post("/api/schedules/daily/trigger")
        assert triggered.status_code == 200, triggered.text
        run = api.engine.get_run(triggered.json()["run_id"])
        assert run.result(timeout=30) == "charged cron 1"


def test_an_unknown_schedule_is_a_404_and_a_read_token_cannot_act(api: Api) -> None:
    reader, writer = api.token("default", "read"), api.token("default", "write")
    with httpx.Client(base_url=api.url, timeout=10) as client:
        missing = client.post("/api/schedules/ghost/pause", headers={"Authorization": f"Bearer {writer}"})
        assert missing.status_code == 404 and missing.json()["error"]["message"]
        refused = client.post("/api/schedules/daily/pause", headers={"Authorization": f"Bearer {reader}"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "auth.scope"
        assert client.get("/api/schedules", headers={"Authorization": f"Bearer {reader}"}).status_code == 200
        assert api.engine.schedules()[0].paused is False
