"""An idempotency key or run id names one request: reused for another, it is a conflict, never another run."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from pydantic import BaseModel

import plait
from plait.http import create_app
from tests.conftest import run_sql


class Order(BaseModel):
    customer: str
    amount: int


@plait.step
def charge(order: Order) -> str:
    return f"charged {order.customer} {order.amount}"


@plait.step
def refund(order: Order) -> str:
    return f"refunded {order.customer} {order.amount}"


charging = plait.workflow("charging", input=Order, output=str).then(charge).commit()
refunding = plait.workflow("refunding", input=Order, output=str).then(refund).commit()


def count_runs(db_url: str) -> int:
    return int(run_sql(db_url, "SELECT count(*) FROM plait_runs")[0][0])


def test_same_key_same_workflow_same_input_returns_the_same_run(engine: plait.Engine) -> None:
    first = engine.start(charging, {"customer": "ann", "amount": 5}, idempotency_key="k1")
    again = engine.start(charging, Order(customer="ann", amount=5), idempotency_key="k1")
    assert again.id == first.id
    assert again.result(timeout=10) == "charged ann 5"


def test_key_reused_for_another_workflow_is_a_conflict(engine: plait.Engine, db_url: str) -> None:
    first = engine.start(charging, {"customer": "ann", "amount": 5}, idempotency_key="k1")
    with pytest.raises(plait.IdempotencyConflict) as caught:
        engine.start(refunding, {"customer": "ann", "amount": 5}, idempotency_key="k1")
    assert caught.value.code == "run.idempotency_conflict"
    assert "charging" in caught.value.message and "new key" in caught.value.message
    assert count_runs(db_url) == 1
    assert first.result(timeout=10) == "charged ann 5"


def test_key_reused_with_another_input_is_a_conflict(engine: plait.Engine, db_url: str) -> None:
    engine.start(charging, {"customer": "ann", "amount": 5}, idempotency_key="k1")
    with pytest.raises(plait.IdempotencyConflict, match="another input"):
        engine.start(charging, {"customer": "ann", "amount": 500}, idempotency_key="k1")
    assert count_runs(db_url) == 1


def test_run_id_reused_with_another_input_or_workflow_is_a_conflict(engine: plait.Engine) -> None:
    first = engine.start(charging, {"customer": "ann", "amount": 5}, run_id="order-1")
    assert engine.start(charging, {"customer": "ann", "amount": 5}, run_id="order-1").id == "order-1"
    with pytest.raises(plait.IdempotencyConflict, match="run id 'order-1'"):
        engine.start(charging, {"customer": "bob", "amount": 5}, run_id="order-1")
    with pytest.raises(plait.IdempotencyConflict, match="run id 'order-1'"):
        engine.start(refunding, {"customer": "ann", "amount": 5}, run_id="order-1")
    assert first.result(timeout=10) == "charged ann 5"


def test_key_of_one_run_with_the_run_id_of_another_is_a_conflict(engine: plait.Engine) -> None:
    engine.start(charging, {"customer": "ann", "amount": 5}, idempotency_key="k1")
    with pytest.raises(plait.IdempotencyConflict, match="not 'order-2'"):
        engine.start(charging, {"customer": "ann", "amount": 5}, run_id="order-2", idempotency_key="k1")


def test_async_start_checks_the_same_way(engine: plait.Engine) -> None:
    async def both() -> None:
        await engine.astart(charging, {"customer": "ann", "amount": 5}, idempotency_key="k1")
        await engine.astart(refunding, {"customer": "ann", "amount": 5}, idempotency_key="k1")

    with pytest.raises(plait.IdempotencyConflict):
        asyncio.run(both())


def test_run_ids_with_control_characters_are_refused(engine: plait.Engine, db_url: str) -> None:
    for bad in ("order-1\n", "", "a\x00b", "\ud800"):
        with pytest.raises(plait.InputValidationError, match="run id"):
            engine.start(charging, {"customer": "ann", "amount": 5}, run_id=bad)
    assert count_runs(db_url) == 0


def test_same_key_in_two_namespaces_gives_each_its_own_run(db_url: str) -> None:
    with plait.Engine(db_url, namespace="a") as a, plait.Engine(db_url, namespace="b") as b:
        run_a = a.start(charging, {"customer": "ann", "amount": 5}, idempotency_key="k1")
        run_b = b.start(refunding, {"customer": "bob", "amount": 7}, idempotency_key="k1")
        assert run_a.id != run_b.id
        assert run_a.result(timeout=10) == "charged ann 5"
        assert run_b.result(timeout=10) == "refunded bob 7"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def api_url(engine: plait.Engine) -> Iterator[str]:
    engine.register(charging, refunding)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(engine), port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)  # the server thread starting up
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_http_key_reused_on_another_workflow_answers_409(api_url: str, db_url: str) -> None:
    headers = {"Idempotency-Key": "delivery-1"}
    body = {"input": {"customer": "ann", "amount": 5}}
    with httpx.Client(base_url=api_url, timeout=10) as client:
        first = client.post("/api/workflows/charging/runs", json=body, headers=headers)
        assert first.status_code == 201
        repeated = client.post("/api/workflows/charging/runs", json=body, headers=headers)
        assert repeated.status_code == 201 and repeated.json()["id"] == first.json()["id"]
        crossed = client.post("/api/workflows/refunding/runs", json=body, headers=headers)
        assert crossed.status_code == 409
        assert crossed.json()["error"]["code"] == "run.idempotency_conflict"
        changed = client.post(
            "/api/workflows/charging/runs", json={"input": {"customer": "ann", "amount": 9}}, headers=headers
        )
        assert changed.status_code == 409
    assert count_runs(db_url) == 1


class Paid(BaseModel):
    ok: bool


awaiting = plait.workflow("awaiting", input=Order).then(charge).wait_for_event("paid", schema=Paid).commit()


def test_two_namespaces_each_have_their_own_run_r1(db_url: str) -> None:
    with plait.Engine(db_url, namespace="a") as a, plait.Engine(db_url, namespace="b") as b:
        run_a = a.start(awaiting, {"customer": "ann", "amount": 5}, run_id="r1")
        run_b = b.start(charging, {"customer": "bob", "amount": 7}, run_id="r1")
        assert run_a.id == run_b.id == "r1"
        assert run_b.result(timeout=10) == "charged bob 7"
        a.run_until_idle()
        assert run_a.status == "waiting"
        # Each namespace sees its own r1: its workflow, its steps, its events.
        assert a.get_run("r1").info().workflow_id == "awaiting"
        assert b.get_run("r1").info().workflow_id == "charging"
        assert [s.output for s in b.get_run("r1").steps()] == ["charged bob 7"]
        assert [s.step_id for s in a.get_run("r1").steps()] == ["charge"]
        # An event sent in b goes to b's r1 (whose workflow waits for nothing): a's r1 keeps waiting.
        with pytest.raises(plait.InputValidationError, match="'charging' never waits"):
            b.send_event("r1", "paid", {"ok": True})
        a.run_until_idle()
        assert a.get_run("r1").status == "waiting"
        a.send_event("r1", "paid", {"ok": True})
        assert run_a.result(timeout=10) == Paid(ok=True)
        assert a.cancel("r1") is False and b.cancel("r1") is False
        assert run_sql(db_url, "SELECT namespace, status FROM plait_runs WHERE id = 'r1' ORDER BY namespace") == [
            ("a", "succeeded"),
            ("b", "succeeded"),
        ]
        # Each run's event log is numbered on its own.
        firsts = "SELECT namespace, min(seq), count(*) FROM plait_events WHERE run_id = 'r1' GROUP BY namespace"
        assert [row[:2] for row in sorted(run_sql(db_url, firsts))] == [("a", 1), ("b", 1)]


def test_a_run_id_of_another_namespace_is_neither_found_nor_confirmed(db_url: str) -> None:
    with plait.Engine(db_url, namespace="a") as a, plait.Engine(db_url, namespace="b", worker=False) as b:
        a.start(charging, {"customer": "ann", "amount": 5}, run_id="secret-order").result(timeout=10)
        with pytest.raises(plait.RunNotFound):
            b.get_run("secret-order")
        with pytest.raises(plait.RunNotFound):
            b.cancel("secret-order")
        # Starting it in b creates b's own run: no conflict, no trace of a's run.
        mine = b.start(refunding, {"customer": "eve", "amount": 1}, run_id="secret-order")
        assert mine.info().workflow_id == "refunding" and mine.info().input == {"customer": "eve", "amount": 1}
    with plait.Engine(db_url, namespace="a", worker=False) as a:
        assert a.get_run("secret-order").info().workflow_id == "charging"
