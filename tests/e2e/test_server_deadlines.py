"""``plait server`` as a real process: slow clients are cut off, and only allowed Host names are served."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.servers import free_port

APP = """
import plait

@plait.step
def double(x: int) -> int:
    return x * 2

doubler = plait.workflow("doubler", input=int).then(double).commit()
engine = plait.Engine("sqlite:///server.db")
engine.register(doubler)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp_path = tmp_path_factory.mktemp("server")
    (tmp_path / "serverapp.py").write_text(APP)
    exe = shutil.which("plait")
    assert exe is not None, "the plait console script is not installed (pip install -e .)"
    port = free_port()
    args = ["server", "--app", "serverapp:engine", "--port", str(port), "--allowed-host", "api.example.com"]
    deadlines = ["--header-timeout", "1", "--body-timeout", "1"]
    process = subprocess.Popen(
        [exe, *args, *deadlines], cwd=tmp_path, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, process.communicate()[1].decode()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/workflows", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "plait server did not start"
        time.sleep(0.05)  # the process starting up
    yield port
    process.terminate()
    process.communicate(timeout=30)


def read_until_closed(conn: socket.socket) -> bytes:
    received = b""
    while chunk := conn.recv(4096):
        received += chunk
    return received


def test_headers_that_never_finish_are_cut_off(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=20) as conn:
        conn.sendall(b"GET /api/workflows HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the blank line never comes
        assert read_until_closed(conn) == b""


def test_headers_sent_a_byte_at_a_time_are_cut_off(server: int) -> None:
    stop = threading.Event()

    with socket.create_connection(("127.0.0.1", server), timeout=20) as conn:

        def trickle() -> None:
            for byte in b"GET /api/workflows HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 500:
                if stop.wait(0.1):  # the pace of the slow client
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:  # the server closed the connection
                    return

        sender = threading.Thread(target=trickle)
        sender.start()
        try:
            # Each byte arrives well within any per-read timeout; the deadline covers all of them.
            assert read_until_closed(conn) == b""
        finally:
            stop.set()
            sender.join()


def test_a_body_that_stops_arriving_gets_408(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=20) as conn:
        conn.sendall(
            b"POST /api/workflows/doubler/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n" + b'{"input": '
        )
        reply = read_until_closed(conn)
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:200]
    assert b'"request.timeout"' in reply


def test_only_allowed_host_names_are_served(server: int) -> None:
    url = f"http://127.0.0.1:{server}/api/workflows"
    assert httpx.get(url, headers={"Host": "api.example.com"}).status_code == 200
    refused = httpx.get(url, headers={"Host": "rebound.attacker.example"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "request.host"
    started = httpx.post(f"http://127.0.0.1:{server}/api/workflows/doubler/runs", json={"input": 4})
    assert started.status_code == 201
