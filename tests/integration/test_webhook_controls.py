"""Per-webhook headers and timeout, and pause/resume: paused deliveries wait, they are not dead-lettered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import plait
from plait.testing import FakeClock
from tests.integration.test_webhooks import SECRET, Receiver, shipping, wait_for_backoff


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def other() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def wait_until(predicate: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)  # the dispatcher's progress in another thread, not a timer


def test_headers_are_sent_and_only_their_names_shown(db_url: str, receiver: Receiver) -> None:
    with plait.Engine(db_url, poll_interval=0.05) as engine:
        hook = engine.add_webhook(
            receiver.url,
            SECRET,
            event_types=["run.completed"],
            headers={"Authorization": "Bearer rcv-token-123", "X-Team": "ops", "Plait-Event-Id": "forged"},
            timeout=5,
        )
        assert hook.header_names == ["Authorization", "Plait-Event-Id", "X-Team"] and hook.timeout == 5
        assert "rcv-token-123" not in json.dumps([h.model_dump(mode="json") for h in engine.webhooks()])
        engine.start(shipping, 1).result(timeout=10)
        receiver.wait_for(1)
        with pytest.raises(plait.InputValidationError, match="character"):
            engine.add_webhook(receiver.url, SECRET, headers={"X-Bad": "a\r\nInjected: yes"})
        with pytest.raises(plait.InputValidationError, match="timeout"):
            engine.add_webhook(receiver.url, SECRET, timeout=0)
    headers, body, _ = receiver.requests[0]
    assert headers["Authorization"] == "Bearer rcv-token-123" and headers["X-Team"] == "ops"
    assert headers["Plait-Event-Id"] == str(json.loads(body)["id"])  # plait's own headers win


def test_a_receiver_slower_than_the_webhook_timeout_is_a_failed_delivery(db_url: str) -> None:
    answered = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            answered.wait(10)  # answers only once the test is over
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with plait.Engine(db_url, poll_interval=0.05, webhook_max_attempts=1) as engine:
            url = f"http://127.0.0.1:{server.server_address[1]}/"
            engine.add_webhook(url, SECRET, event_types=["run.completed"], timeout=0.2)
            engine.start(shipping, 1).result(timeout=10)
            wait_until(engine.dead_letters)
            assert "Timeout" in (engine.dead_letters()[0].last_error or "")
    finally:
        answered.set()
        server.shutdown()
        server.server_close()


def test_a_paused_webhook_holds_its_events_until_resumed(db_url: str, receiver: Receiver, other: Receiver) -> None:
    with plait.Engine(db_url, poll_interval=0.05) as engine:
        paused = engine.add_webhook(receiver.url, SECRET, event_types=["run.completed"])
        engine.add_webhook(other.url, SECRET, event_types=["run.completed"])
        engine.pause_webhook(paused.id)
        assert [h.paused for h in engine.webhooks()] == [True, False]
        engine.start(shipping, 1).result(timeout=10)
        engine.start(shipping, 2).result(timeout=10)
        other.wait_for(2)  # the unpaused webhook delivered both while the paused one held them
        assert receiver.requests == [] and engine.dead_letters() == []
        engine.resume_webhook(paused.id)
        receiver.wait_for(2)
        with pytest.raises(plait.RunNotFound, match="no webhook"):
            engine.pause_webhook("wh_nope")
    outputs = [json.loads(body)["payload"]["output"] for _, body, _ in receiver.requests]
    assert outputs == ["shipped 1", "shipped 2"]


def test_pausing_a_failing_webhook_keeps_the_event_out_of_dead_letters(db_url: str, receiver: Receiver) -> None:
    clock = FakeClock()
    receiver.statuses = [500]
    with plait.Engine(db_url, clock=clock, webhook_backoff=10.0, webhook_max_attempts=2, poll_interval=0.05) as engine:
        hook = engine.add_webhook(receiver.url, SECRET, event_types=["run.completed"])
        engine.start(shipping, 3).result(timeout=10)
        receiver.wait_for(1)
        wait_for_backoff(clock, 10)
        engine.pause_webhook(hook.id)
        clock.advance(seconds=10)  # the retry is due, but the webhook is paused: nothing is sent or dead-lettered
        engine.resume_webhook(hook.id)
        receiver.wait_for(2)
        assert engine.dead_letters() == []
    assert [status for _, _, status in receiver.requests] == [500, 200]


def test_cli_pauses_and_resumes_with_only_the_database(db_url: str, receiver: Receiver) -> None:
    with plait.Engine(db_url, worker=False) as engine:
        hook = engine.add_webhook(receiver.url, SECRET)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PLAIT_DATABASE_URL": db_url}
        return subprocess.run(
            [sys.executable, "-m", "plait.cli", *args], capture_output=True, text=True, env=env, timeout=60
        )

    assert cli("webhooks", "pause", hook.id).returncode == 0
    listed = cli("webhooks", "list", "--json")
    assert json.loads(listed.stdout)[0]["paused"] is True
    assert cli("webhooks", "resume", hook.id, "--db", db_url).returncode == 0
    with plait.Engine(db_url, worker=False) as engine:
        assert engine.webhooks()[0].paused is False
    missing = cli("webhooks", "pause", "wh_missing")
    assert missing.returncode == 2 and "no webhook 'wh_missing'" in missing.stderr
