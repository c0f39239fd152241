"""The documents API through a real uvicorn server: catalog, versions, If-Match / 412, ops and runs."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

import plait
from plait.http import create_app
from tests.document_kit import SECRET, count, enrich, lead_document, slack
from tests.e2e.servers import serving
from tests.e2e.test_http import Api


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    with plait.Engine(db_url, secrets={"SLACK_TOKEN": SECRET}) as engine:
        engine.register(enrich, slack, count)
        with serving(create_app(engine)) as url:
            yield Api(url, engine)


def test_catalog_documents_patches_and_runs_over_http(api: Api) -> None:
    with httpx.Client(base_url=api.url, timeout=30) as http:
        catalog = http.get("/api/connectors").json()
        assert {c["type"] for c in catalog["connectors"]} == {"crm.enrich", "slack.send", "math.count"}
        assert "SLACK_TOKEN" not in json.dumps(catalog) and '"token"' not in json.dumps(catalog)

        missing = http.get("/api/documents/lead-notifier")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "workflow.not_found"

        put = http.put("/api/documents/lead-notifier", json=lead_document())
        assert put.status_code == 200 and put.json() == {"id": "lead-notifier", "version": 1}
        assert put.headers["etag"] == '"1"'

        stale_put = http.put("/api/documents/lead-notifier", json=lead_document(), headers={"If-Match": '"0"'})
        assert stale_put.status_code == 412 and stale_put.json()["error"]["code"] == "document.version_conflict"

        bad = lead_document(output="{{ghost.x}}")
        invalid = http.put("/api/documents/lead-notifier", json=bad)
        assert invalid.status_code == 422
        assert invalid.json()["error"]["details"][0] == {
            "path": "output",
            "code": "unknown_reference",
            "reason": "there is no block 'ghost'",
            "hint": "blocks: enrich, notify",
        }

        ops = {
            "ops": [
                {"op": "update_block", "id": "notify", "params": {"text": "Hi {{enrich.name}}"}},
                {"op": "update_block", "id": "notify", "params": {"Token": "xoxb-from-the-llm"}},
            ]
        }
        patched = http.post("/api/documents/lead-notifier/ops", json=ops, headers={"If-Match": '"1"'})
        assert patched.status_code == 200, patched.text
        body = patched.json()
        assert body["applied"] == [0] and body["skipped"][0]["code"] == "hidden_param"
        assert "xoxb-from-the-llm" not in patched.text
        assert patched.headers["etag"] == '"2"' and body["version"] == 2

        conflict = http.post("/api/documents/lead-notifier/ops", json=ops, headers={"If-Match": '"1"'})
        assert conflict.status_code == 412
        assert conflict.json()["error"] == {
            "code": "document.version_conflict",
            "message": "document 'lead-notifier' is at version 2; read it again and resend the ops",
            "details": {"version": 2},
        }
        garbage = http.post("/api/documents/lead-notifier/ops", json=ops, headers={"If-Match": "abc"})
        assert garbage.status_code == 412

        versions = http.get("/api/documents/lead-notifier/versions").json()
        assert [v["version"] for v in versions] == [1, 2] and versions[1]["actor"] == "llm"
        current = http.get("/api/documents/lead-notifier")
        assert (
            current.headers["etag"] == '"2"'
            and current.json()["document"]["blocks"][1]["params"]["text"] == "Hi {{enrich.name}}"
        )
        assert http.get("/api/documents/lead-notifier", params={"version": 1}).json()["version"] == 1
        assert [d["id"] for d in http.get("/api/documents").json()] == ["lead-notifier"]

        started = http.post("/api/documents/lead-notifier/runs", json={"input": {"email": "ada@acme.com"}})
        assert started.status_code == 201, started.text
        run_id = started.json()["id"]
        result = api.engine.get_run(run_id).result(timeout=30)
        assert result["sent"] == "Hi Acme"
        old = http.post("/api/documents/lead-notifier/runs", json={"input": {"email": "ada@acme.com"}, "version": 1})
        assert api.engine.get_run(old.json()["id"]).result(timeout=30)["sent"] == "Lead Acme in Paris"

        bad_input = http.post("/api/documents/lead-notifier/runs", json={"input": {"mail": 1}})
        assert bad_input.status_code == 422

        for path, payload in [
            ("/api/documents/lead-notifier/ops", {"ops": "nope"}),
            ("/api/documents/lead-notifier/ops", {"ops": [1, None, "x", {"op": None}]}),
            ("/api/documents/other", lead_document()),
        ]:
            response = http.post(path, json=payload) if path.endswith("ops") else http.put(path, json=payload)
            assert response.status_code < 500, response.text
        weird_ops = http.post("/api/documents/lead-notifier/ops", json={"ops": [1, None, {"op": None}]}).json()
        assert [s["code"] for s in weird_ops["skipped"]] == ["malformed_op"] * 3

        everything = json.dumps([http.get(f"/api/runs/{run_id}").json(), versions, catalog])
        assert SECRET not in everything
