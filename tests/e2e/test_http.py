"""The HTTP API through a real uvicorn server on 127.0.0.1 and a real HTTP client."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from pydantic import BaseModel

import plait
from plait.http import TriggerRequest, create_app
from plait.store import tokens as token_table
from tests.e2e.servers import serving


class Order(BaseModel):
    customer: str
    amount: int


class Paid(BaseModel):
    ok: bool


@plait.step
async def charge(order: Order) -> str:
    return f"charged {order.customer} {order.amount}"


checkout = plait.workflow("checkout", input=Order).then(charge).commit()
waiting = plait.workflow("awaits_payment", input=Order).wait_for_event("paid", schema=Paid).commit()
SECRET = "trigger-secret-for-tests"
JSON = {"content-type": "application/json"}


@dataclass
class Api:
    url: str
    engine: plait.Engine

    def token(self, namespace: str, scope: str) -> str:
        _, value = self.engine._loop.run(token_table.create(self.engine._store, namespace, scope, time.time()))
        return value


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    with plait.Engine(db_url) as engine:
        engine.register(checkout, waiting)
        engine.http_trigger(
            "orders/{customer}",
            checkout,
            input_from=lambda req: {"customer": req.path_params["customer"], "amount": req.json()["amount"]},
            idempotency_key_from=lambda req: req.headers.get("x-delivery"),
        )
        engine.http_trigger("signed", checkout, secret=SECRET)
        with serving(create_app(engine, max_body_bytes=4096)) as url:
            yield Api(url, engine)


def test_start_follow_the_event_stream_and_read_the_result(api: Api) -> None:
    with httpx.Client(base_url=api.url, timeout=10) as client:
        started = client.post("/api/workflows/checkout/runs", json={"input": {"customer": "ada", "amount": 5}})
        assert started.status_code == 201, started.text
        run_id = started.json()["id"]
        types = []
        with client.stream("GET", f"/api/runs/{run_id}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    types.append(line.removeprefix("event: "))
        assert types[0] == "run.created" and types[-1] == "run.completed"
        detail = client.get(f"/api/runs/{run_id}").json()
        assert detail["run"]["output"] == "charged ada 5" and detail["steps"][0]["step_id"] == "charge"
        with client.stream("GET", f"/api/runs/{run_id}/events", headers={"Last-Event-ID": "2"}) as stream:
            ids = [int(line[4:]) for line in stream.iter_lines() if line.startswith("id: ")]
        assert ids[0] == 3
        listed = client.get("/api/runs", params={"workflow": "checkout", "limit": 10}).json()
        assert [r["id"] for r in listed["items"]] == [run_id]
        assert client.get("/api/workflows").json()[0]["graph"]["nodes"]


def test_the_same_idempotency_key_from_eight_clients_gives_one_run(api: Api) -> None:
    ids: list[str] = []

    def start() -> None:
        with httpx.Client(base_url=api.url, timeout=10) as client:
            response = client.post(
                "/api/workflows/checkout/runs",
                json={"input": {"customer": "bob", "amount": 1}},
                headers={"Idempotency-Key": "order-77"},
            )
            ids.append(response.json()["id"])

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 8 and len(set(ids)) == 1


def test_bad_requests_get_structured_4xx_never_500(api: Api) -> None:
    with httpx.Client(base_url=api.url, timeout=10) as client:
        cases = [
            (
                client.post(
                    "/api/workflows/checkout/runs", content=b"{nope", headers={"content-type": "application/json"}
                ),
                400,
                "request.malformed",
            ),
            (client.post("/api/workflows/checkout/runs", json={"input": {"customer": "x"}}), 422, "input.invalid"),
            (client.post("/api/workflows/nowhere/runs", json={"input": {}}), 404, "workflow.not_found"),
            (client.get("/api/runs/nope"), 404, "run.not_found"),
            (client.post("/api/workflows/checkout/runs", content=b"x" * 5000, headers=JSON), 413, "request.too_large"),
            (client.post("/api/workflows/checkout/runs", content=b"{}"), 415, "request.content_type"),
            (client.get("/api/runs", params={"status": "sleepy"}), 422, "input.invalid"),
            (client.get("/api/nothing-here"), 404, "route.not_found"),
        ]
        for response, status, code in cases:
            assert response.status_code == status, response.text
            assert response.json()["error"]["code"] == code
            assert response.json()["error"]["message"]
        waiting_run = client.post("/api/workflows/awaits_payment/runs", json={"input": {"customer": "c", "amount": 1}})
        run_id = waiting_run.json()["id"]
        bad_event = client.post(f"/api/runs/{run_id}/events", json={"name": "paid", "payload": {"ok": "maybe"}})
        assert bad_event.status_code == 422 and bad_event.json()["error"]["details"][0]["loc"] == ["ok"]
        assert client.post(f"/api/runs/{run_id}/events", json={"name": "paid", "payload": {"ok": True}}).json() == {
            "delivered": True
        }


def test_tokens_limit_each_caller_to_its_namespace_and_scope(api: Api) -> None:
    reader_a, writer_a, writer_b = api.token("default", "read"), api.token("default", "write"), api.token("b", "write")
    time.sleep(1.1)  # the app notices the first token within a second
    with httpx.Client(base_url=api.url, timeout=10) as client:
        assert client.get("/api/runs").status_code == 401
        assert client.get("/api/runs", headers={"Authorization": "Bearer plt_nope_nope"}).status_code == 401
        as_a = {"Authorization": f"Bearer {writer_a}"}
        run_id = client.post(
            "/api/workflows/awaits_payment/runs", json={"input": {"customer": "a", "amount": 1}}, headers=as_a
        ).json()["id"]
        denied = client.post(
            "/api/workflows/checkout/runs",
            json={"input": {"customer": "a", "amount": 1}},
            headers={"Authorization": f"Bearer {reader_a}"},
        )
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "auth.scope"
        assert client.get(f"/api/runs/{run_id}", headers={"Authorization": f"Bearer {reader_a}"}).status_code == 200
        as_b = {"Authorization": f"Bearer {writer_b}"}
        assert client.get(f"/api/runs/{run_id}", headers=as_b).status_code == 404
        assert client.post(f"/api/runs/{run_id}/cancel", headers=as_b).status_code == 404
        assert (
            client.post(
                f"/api/runs/{run_id}/events", json={"name": "paid", "payload": {"ok": True}}, headers=as_b
            ).status_code
            == 404
        )
        assert client.get("/api/runs", headers=as_b).json()["items"] == []
        assert client.get("/api/dead-letters", headers=as_a).status_code == 403


def test_http_triggers_start_runs_once_per_delivery_and_check_signatures(api: Api) -> None:
    with httpx.Client(base_url=api.url, timeout=10) as client:
        first = client.post("/hooks/orders/carol", json={"amount": 9}, headers={"X-Delivery": "d1"})
        again = client.post("/hooks/orders/carol", json={"amount": 9}, headers={"X-Delivery": "d1"})
        assert first.status_code == 202 and again.json() == first.json()
        assert api.engine.get_run(first.json()["run_id"]).result(timeout=10) == "charged carol 9"
        body = json.dumps({"customer": "dan", "amount": 3}).encode()
        good = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        signed = client.post("/hooks/signed", content=body, headers={"X-Hub-Signature-256": good})
        assert signed.status_code == 202
        forged = client.post("/hooks/signed", content=body, headers={"X-Hub-Signature-256": "sha256=00"})
        assert forged.status_code == 401 and forged.json()["error"]["code"] == "auth.signature"
        bad_input = client.post("/hooks/orders/erin", json={"no_amount": 1})
        assert bad_input.status_code == 422
        assert client.post("/api/tick").json()["schedules_fired"] == 0


def test_trigger_request_helper_reads_json() -> None:
    assert TriggerRequest({}, {}, {}, b'{"a": 1}').json() == {"a": 1}
