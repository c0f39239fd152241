"""Signed webhooks against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import plait
from plait.testing import FakeClock
from plait.webhooks import verify

SECRET = "whsec-0123456789abcdef-never-show-me"


class Receiver:
    """A real HTTP server that answers with the next status of ``statuses`` (then 200) and keeps requests."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.requests.append((dict(self.headers), body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"only {len(self.requests)} of {count} requests arrived"
            time.sleep(0.01)  # the dispatcher's progress in another thread, not a timer

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@plait.step
def ship(order_id: int) -> str:
    return f"shipped {order_id}"


shipping = plait.workflow("shipping", input=int).then(ship).commit()


def wait_for_backoff(clock: FakeClock, seconds: float) -> None:
    """Wait until the dispatcher sleeps its back-off, so the clock is advanced past it, not before it."""
    deadline = time.monotonic() + 20
    while clock.next_wakeup() != clock.now() + timedelta(seconds=seconds):
        assert time.monotonic() < deadline, f"no {seconds}s back-off started (next wake-up {clock.next_wakeup()})"
        time.sleep(0.005)  # the dispatcher's progress in another thread


def independent_signature_ok(secret: str, headers: dict[str, str], body: bytes) -> bool:
    fields = dict(item.split("=", 1) for item in headers["Plait-Signature"].split(","))
    expected = hmac.new(secret.encode(), fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"]) and abs(time.time() - int(fields["t"])) < 300


def test_failed_deliveries_retry_with_backoff_and_the_signature_verifies(db_url: str, receiver: Receiver) -> None:
    clock = FakeClock()
    receiver.statuses = [500, 503]
    with plait.Engine(db_url, clock=clock, webhook_backoff=10.0, poll_interval=0.05) as engine:
        hook = engine.add_webhook(receiver.url, SECRET, event_types=["run.completed"])
        run = engine.start(shipping, 7)
        assert run.result(timeout=10) == "shipped 7"
        receiver.wait_for(1)
        wait_for_backoff(clock, 10)
        clock.advance(seconds=10)  # first back-off
        receiver.wait_for(2)
        wait_for_backoff(clock, 20)
        clock.advance(seconds=20)  # doubled
        receiver.wait_for(3)
        assert engine.dead_letters() == []
    assert [status for _, _, status in receiver.requests] == [500, 503, 200]
    headers, body, _ = receiver.requests[-1]
    event = json.loads(body)
    assert (
        event["type"] == "run.completed" and event["run_id"] == run.id and event["payload"] == {"output": "shipped 7"}
    )
    assert headers["Plait-Event-Type"] == "run.completed" and headers["Plait-Webhook-Id"] == hook.id
    assert independent_signature_ok(SECRET, headers, body)
    assert verify(SECRET, headers["Plait-Signature"], body)
    tampered = body.replace(b"shipped 7", b"shipped 8")
    assert not independent_signature_ok(SECRET, headers, tampered)
    assert not verify(SECRET, headers["Plait-Signature"], tampered)
    assert not verify(SECRET, headers["Plait-Signature"], body, now=time.time() + 301)  # a replay, too old


def test_a_dead_receiver_ends_in_dead_letters_that_replay_once_it_is_back(db_url: str, receiver: Receiver) -> None:
    receiver.statuses = [500] * 3
    with plait.Engine(db_url, webhook_max_attempts=3, webhook_backoff=0.0, poll_interval=0.05) as engine:
        engine.add_webhook(receiver.url, SECRET, event_types=["run.completed"], workflows=[shipping])
        engine.start(shipping, 1).result(timeout=10)
        receiver.wait_for(3)
        deadline = time.monotonic() + 10
        while not engine.dead_letters():
            assert time.monotonic() < deadline
            time.sleep(0.01)  # the dispatcher records the dead letter after its third failure
        (letter,) = engine.dead_letters()
        assert letter.attempts == 3 and letter.last_error == "HTTP 500"
        assert engine.replay_dead_letters() == 1
        assert engine.dead_letters() == []
    assert [status for _, _, status in receiver.requests] == [500, 500, 500, 200]


def test_filters_by_event_type_and_workflow(db_url: str, receiver: Receiver) -> None:
    other = plait.workflow("not_shipping", input=int).then(ship.with_options(id="s2")).commit()
    with plait.Engine(db_url, poll_interval=0.05) as engine:
        engine.add_webhook(receiver.url, SECRET, event_types=["step.completed"], workflows=["shipping"])
        engine.start(other, 1).result(timeout=10)
        engine.start(shipping, 2).result(timeout=10)
        receiver.wait_for(1)
        engine.start(shipping, 3).result(timeout=10)
        receiver.wait_for(2)
    kinds = [(json.loads(body)["type"], json.loads(body)["workflow_id"]) for _, body, _ in receiver.requests]
    assert kinds == [("step.completed", "shipping"), ("step.completed", "shipping")]


def test_the_secret_never_appears_in_events_logs_or_exported_json(
    db_url: str, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses = [500]
    with caplog.at_level(logging.DEBUG), plait.Engine(db_url, webhook_backoff=0.0, poll_interval=0.05) as engine:
        hook = engine.add_webhook(receiver.url, SECRET)
        run = engine.start(shipping, 1)
        run.result(timeout=10)
        receiver.wait_for(4)
        exported = [
            hook.model_dump_json(),
            json.dumps([h.model_dump(mode="json") for h in engine.webhooks()]),
            engine.events().model_dump_json(),
            json.dumps([e.model_dump(mode="json") for e in run.events()]),
            shipping.to_json(),
            run.info().model_dump_json(),
        ]
    everything = (
        "\n".join(exported)
        + caplog.text
        + "".join(h for h, _, _ in [(str(r[0]), r[1], r[2]) for r in receiver.requests])
    )
    assert SECRET not in everything
    assert "secret" not in hook.model_dump()
    with plait.Engine(db_url, worker=False) as client, pytest.raises(plait.InputValidationError):
        client.add_webhook("ftp://x", SECRET)


def test_a_value_marked_secret_is_never_stored_or_shown(engine: plait.Engine, db_url: str) -> None:
    from pydantic import BaseModel, SecretStr

    from tests.conftest import run_sql

    class Credentials(BaseModel):
        user: str
        api_key: SecretStr

    @plait.step
    def login(ctx: plait.Context, creds: Credentials) -> str:
        ctx.log.info("logging in %s", creds.user)
        return f"hello {creds.user}"

    token = "sk-live-do-not-leak-4242"
    run = engine.start(
        plait.workflow("login_flow", input=Credentials).then(login).commit(), {"user": "ada", "api_key": token}
    )
    assert run.result(timeout=10) == "hello ada"
    dumped = "".join(
        str(row)
        for table in ("plait_runs", "plait_steps", "plait_events")
        for row in run_sql(db_url, f"SELECT * FROM {table}")
    )
    shown = run.info().model_dump_json() + "".join(s.model_dump_json() for s in run.steps())
    assert "ada" in dumped and token not in dumped and token not in shown
