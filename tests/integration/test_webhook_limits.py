"""Receivers and stored rows cannot stall the engine: slow or huge answers, and rows that do not decode."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import uvicorn

import plait
from plait.http import create_app
from plait.payloads import UNREADABLE_KEY
from tests.conftest import run_sql

SECRET = "whsec-limits-0123456789abcdef"
HUGE_BODY = 200 * 1024 * 1024


@plait.step
def ship(order_id: int) -> str:
    return f"shipped {order_id}"


shipping = plait.workflow("shipping_limits", input=int).then(ship).commit()


class Receiver:
    """A real HTTP server on 127.0.0.1; ``answer(handler, index)`` writes the answer of request ``index``."""

    def __init__(self, answer: Callable[[BaseHTTPRequestHandler, int], None]) -> None:
        self.bodies: list[bytes] = []
        self.sent: list[int] = []  # body bytes each answer got out before the client hung up
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                receiver.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client hung up: expected
                    answer(self, len(receiver.bodies) - 1)
                self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)  # another thread's progress (the dispatcher, a receiver), not a timer


def drip_then_ok(slow_requests: int) -> Callable[[BaseHTTPRequestHandler, int], None]:
    """The first ``slow_requests`` answers send one body byte every 0.2 s, forever; later ones answer 200."""

    def answer(handler: BaseHTTPRequestHandler, index: int) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000000" if index < slow_requests else "0")
        handler.end_headers()
        handler.wfile.flush()
        while index < slow_requests:
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(0.2)  # the receiver's drip: each read gets a byte well within any per-read timeout

    return answer


def test_a_receiver_that_drips_its_answer_is_cut_off_retried_and_dead_lettered(db_url: str) -> None:
    receiver = Receiver(drip_then_ok(slow_requests=2))
    try:
        with plait.Engine(
            db_url, webhook_timeout=1.0, webhook_max_attempts=2, webhook_backoff=0.0, poll_interval=0.05
        ) as engine:
            engine.add_webhook(receiver.url, SECRET, event_types=["run.completed"])
            engine.start(shipping, 1).result(timeout=10)
            wait_until(lambda: bool(engine.dead_letters()), "the stuck delivery to be dead-lettered")
            (letter,) = engine.dead_letters()
            assert letter.attempts == 2 and "no complete answer within 1s" in (letter.last_error or "")
            # The webhook is not stuck: the next event goes through.
            engine.start(shipping, 2).result(timeout=10)
            wait_until(lambda: len(receiver.bodies) >= 3, "the next delivery")
            assert b"shipped 2" in receiver.bodies[2]
            assert len(engine.dead_letters()) == 1
    finally:
        receiver.close()


def test_only_the_first_few_kilobytes_of_a_huge_answer_are_read(db_url: str) -> None:
    def huge(handler: BaseHTTPRequestHandler, index: int) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(HUGE_BODY))
        handler.end_headers()
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < HUGE_BODY:
                handler.wfile.write(chunk)
                sent += len(chunk)
        finally:
            receiver.sent.append(sent)

    receiver = Receiver(huge)
    try:
        with plait.Engine(db_url, webhook_backoff=0.0, poll_interval=0.05) as engine:
            engine.add_webhook(receiver.url, SECRET, event_types=["run.completed"])
            engine.start(shipping, 1).result(timeout=10)
            wait_until(lambda: bool(receiver.sent), "the receiver to finish or be cut off")
            assert engine.dead_letters() == []  # a 200 is a delivery, whatever follows it
    finally:
        receiver.close()
    # Socket buffers let a few MB out before the receiver notices the hang-up; never the 200 MB.
    assert receiver.sent[0] < 32 * 1024 * 1024


# -- rows that cannot be decoded -------------------------------------------------------


POISON = "9" * 5000  # an integer no JSON reader of Python accepts (written by an older plait)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def serve() -> Iterator[Callable[[plait.Engine], str]]:
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(engine: plait.Engine) -> str:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(engine), port=port, log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_until(lambda: server.started, "the API server to start")
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_row_that_cannot_be_decoded_stops_no_reader(db_url: str, serve: Callable[[plait.Engine], str]) -> None:
    def no_content(handler: BaseHTTPRequestHandler, index: int) -> None:
        handler.send_response(204)
        handler.end_headers()

    receiver = Receiver(no_content)
    seen: list[plait.Event] = []
    try:
        with plait.Engine(db_url, poll_interval=0.05) as engine:
            engine.add_webhook(receiver.url, SECRET, event_types=["run.completed"])
            subscription = engine.subscribe(seen.append, types=["run.completed"])
            poisoned = engine.start(shipping, 1)
            poisoned.result(timeout=10)
            wait_until(lambda: len(receiver.bodies) >= 1 and len(seen) >= 1, "the first event to be consumed")
            # Rows an older plait could write: an output, and an event appended to the feed, that no reader decodes.
            run_sql(db_url, "UPDATE plait_runs SET output = ? WHERE id = ?", (POISON, poisoned.id))
            run_sql(db_url, "UPDATE plait_steps SET output = ? WHERE run_id = ?", (POISON, poisoned.id))
            run_sql(
                db_url,
                "INSERT INTO plait_events (namespace, run_id, workflow_id, seq, type, payload, created_at) "
                "VALUES ('default', ?, 'shipping_limits', 1000, 'run.completed', ?, 0)",
                (poisoned.id, POISON),
            )
            engine.start(shipping, 2).result(timeout=10)
            # The outbox and the subscriber moved past the poisoned event to the next one.
            wait_until(lambda: len(receiver.bodies) >= 3, "the webhook to deliver past the poisoned event")
            assert UNREADABLE_KEY.encode() in receiver.bodies[1] and b"shipped 2" in receiver.bodies[2]
            wait_until(lambda: len(seen) >= 3, "the subscriber to get past the poisoned event")
            assert isinstance(seen[1].payload, dict) and UNREADABLE_KEY in seen[1].payload
            engine.unsubscribe(subscription)
            # Every listing and view answers, with a marker where the value was.
            info = poisoned.info()
            assert isinstance(info.output, dict) and UNREADABLE_KEY in info.output
            assert UNREADABLE_KEY in poisoned.steps()[0].output
            assert len(engine.list_runs(limit=10).items) == 2
            assert [e.type for e in poisoned.events(follow=False)][-1] == "run.completed"
            assert engine.events(limit=1000) is not None
            with pytest.raises(plait.StepOutputInvalid):  # the typed result itself cannot be read back
                poisoned.result(timeout=1)
            url = serve(engine)
            with httpx.Client(base_url=url, timeout=10) as client:
                listed = client.get("/api/runs", params={"limit": 10})
                assert listed.status_code == 200, listed.text
                assert len(listed.json()["items"]) == 2
                detail = client.get(f"/api/runs/{poisoned.id}")
                assert detail.status_code == 200, detail.text
    finally:
        receiver.close()


@pytest.mark.parametrize(
    "header",
    ["t=1,v1=é", "t=1,v1=\ud800", "t=²,v1=ab", f"t={'9' * 5000},v1=ab", f"t=1{'0' * 400},v1=ab", "", "garbage"],
)
def test_verify_answers_false_for_any_malformed_signature(header: str) -> None:
    from plait.webhooks import sign, verify

    body = b'{"id": 1}'
    assert verify(SECRET, header, body, now=1) is False
    assert verify(SECRET, sign(SECRET, body, 1), body, now=1) is True
