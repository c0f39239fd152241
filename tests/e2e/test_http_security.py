"""The API as an attacker meets it, through a real uvicorn server on a real socket (issue 11).

Tokens that stay required, triggers that keep to their namespace, Host and
Origin checks, replayed deliveries, and hostile values that must get a 4xx.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

import plait
from plait.http import create_app
from plait.store import tokens as token_table
from plait.testing import FakeClock
from tests.e2e.servers import non_loopback_address, serving
from tests.e2e.test_http import checkout, waiting

SECRET = "hook-secret"
JSON = {"content-type": "application/json"}
ORDER = {"customer": "ada", "amount": 5}


def token(engine: plait.Engine, namespace: str, scope: str) -> str:
    _, value = engine._loop.run(token_table.create(engine._store, namespace, scope, time.time()))
    return value


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def sign(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def stamp(body: bytes, at: int, secret: str = SECRET) -> str:
    return f"t={at},v1=" + hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()


@pytest.fixture
def engine(db_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(db_url) as engine:
        engine.register(checkout, waiting)
        engine.http_trigger("open", checkout)
        engine.http_trigger("github", checkout, secret=SECRET)
        engine.http_trigger(
            "stripe", checkout, secret=SECRET, signature="timestamped", signature_header="Stripe-Signature"
        )
        yield engine


def run_count(engine: plait.Engine) -> int:
    return len(engine.list_runs(workflow="checkout", limit=1000).items)


# -- 1: tokens stay required ------------------------------------------------------------------------


def test_revoking_the_last_token_keeps_authentication_on(engine: plait.Engine) -> None:
    admin = token(engine, "default", "admin")
    with serving(create_app(engine)) as url:
        assert httpx.get(f"{url}/api/runs").status_code == 401
        assert httpx.get(f"{url}/api/runs", headers=bearer(admin)).status_code == 200
    token_id = admin.split("_")[1]
    assert engine._loop.run(token_table.revoke(engine._store, token_id, time.time()))
    # A server started after the revocation, with no active token left, still requires one.
    with serving(create_app(engine)) as url:
        anonymous = httpx.get(f"{url}/api/runs")
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "auth.missing"
        assert httpx.post(f"{url}/api/tick").status_code == 401
        assert httpx.get(f"{url}/api/runs", headers=bearer(admin)).json()["error"]["code"] == "auth.invalid"
        fresh = token(engine, "default", "read")
        assert httpx.get(f"{url}/api/runs", headers=bearer(fresh)).status_code == 200


def test_an_api_without_tokens_answers_only_on_loopback(engine: plait.Engine) -> None:
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no address other than loopback")
    with serving(create_app(engine), host=address) as url:
        refused = httpx.get(f"{url}/api/runs")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "auth.missing"
        assert "loopback" in refused.json()["error"]["message"]
        assert httpx.post(f"{url}/hooks/open", json=ORDER).status_code == 401
    with serving(create_app(engine)) as url:
        assert httpx.get(f"{url}/api/runs").status_code == 200
    assert run_count(engine) == 0


# -- 2: a trigger belongs to its engine's namespace -----------------------------------------------------


def test_a_trigger_refuses_the_token_of_another_namespace(engine: plait.Engine) -> None:
    theirs, ours = token(engine, "b", "write"), token(engine, "default", "write")
    with serving(create_app(engine)) as url:
        foreign = httpx.post(f"{url}/hooks/open", json=ORDER, headers=bearer(theirs))
        assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "route.not_found"
        assert run_count(engine) == 0
        b_runs = httpx.get(f"{url}/api/runs", headers=bearer(theirs)).json()["items"]
        assert b_runs == []
        own = httpx.post(f"{url}/hooks/open", json=ORDER, headers=bearer(ours))
        assert own.status_code == 202
        assert engine.get_run(own.json()["run_id"]).result(timeout=10) == "charged ada 5"


def test_declaring_a_trigger_does_not_load_the_http_layer(tmp_path: object) -> None:
    script = (
        "import sys, plait\n"
        "def same(x: int) -> int:\n    return x\n"
        "flow = plait.workflow('flow', input=int).then(plait.step(same)).commit()\n"
        f"engine = plait.Engine('sqlite:///{tmp_path}/t.db', worker=False)\n"
        "engine.http_trigger('x', flow, secret='s')\n"
        "engine.close()\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('plait.http.', 'fastapi', 'starlette')))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# -- 3: Host, Origin and content type -------------------------------------------------------------------


def test_foreign_host_names_are_refused_unless_allowed(engine: plait.Engine) -> None:
    with serving(create_app(engine, allowed_hosts=["api.example.com", "*.internal.example"])) as url:
        rebound = httpx.get(f"{url}/api/runs", headers={"Host": "attacker.example"})
        assert rebound.status_code == 400 and rebound.json()["error"]["code"] == "request.host"
        assert "--allowed-host" in rebound.json()["error"]["message"]
        for name in ("localhost", "127.0.0.1", "api.example.com:8000", "plait.internal.example"):
            assert httpx.get(f"{url}/api/runs", headers={"Host": name}).status_code == 200, name
        assert httpx.get(f"{url}/api/runs", headers={"Host": "internal.example.evil"}).status_code == 400


def test_cross_site_requests_cannot_change_anything(engine: plait.Engine) -> None:
    with serving(create_app(engine)) as url:
        host = url.removeprefix("http://")
        # What a page on another site can send without a preflight: a text/plain POST.
        attacks = [
            ("/hooks/open", {"Origin": "http://attacker.example", "content-type": "text/plain"}),
            ("/api/tick", {"Origin": "http://attacker.example"}),
            ("/api/dead-letters/replay", {"Sec-Fetch-Site": "cross-site"}),
            ("/api/workflows/checkout/runs", {"Origin": "null", "content-type": "application/json"}),
        ]
        for path, headers in attacks:
            refused = httpx.post(f"{url}{path}", content=json.dumps({"input": ORDER}), headers=headers)
            assert refused.status_code == 403, (path, refused.text)
            assert refused.json()["error"]["code"] == "request.cross_origin"
        plain = httpx.post(
            f"{url}/api/workflows/checkout/runs",
            content=json.dumps({"input": ORDER}),
            headers={"content-type": "text/plain"},
        )
        assert plain.status_code == 415 and plain.json()["error"]["code"] == "request.content_type"
        assert run_count(engine) == 0
        same_origin = {"Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}
        assert httpx.post(f"{url}/api/tick", headers=same_origin).status_code == 200
        assert (
            httpx.post(f"{url}/api/workflows/checkout/runs", json={"input": ORDER}, headers=same_origin).status_code
            == 201
        )


# -- 5: replayed deliveries ---------------------------------------------------------------------------


def test_a_replayed_signed_delivery_starts_one_run(engine: plait.Engine) -> None:
    body = json.dumps(ORDER).encode()
    stripe_body = json.dumps({"id": "evt_1", **ORDER}).encode()
    now = int(time.time())
    with serving(create_app(engine)) as url:
        github = {"X-Hub-Signature-256": sign(body), "X-GitHub-Delivery": "72d3162e", **JSON}
        first = [httpx.post(f"{url}/hooks/github", content=body, headers=github) for _ in range(3)]
        assert {r.status_code for r in first} == {202} and len({r.json()["run_id"] for r in first}) == 1
        generic = {"X-Hub-Signature-256": sign(body), "X-Delivery-Id": "d-9", **JSON}
        second = [httpx.post(f"{url}/hooks/github", content=body, headers=generic) for _ in range(3)]
        assert len({r.json()["run_id"] for r in second}) == 1
        # Stripe signs each retry anew: a new timestamp, the same event id.
        stripe = [
            httpx.post(
                f"{url}/hooks/stripe", content=stripe_body, headers={"Stripe-Signature": stamp(stripe_body, now - i)}
            )
            for i in range(3)
        ]
        assert {r.status_code for r in stripe} == {202}, stripe[0].text
        assert len({r.json()["run_id"] for r in stripe}) == 1
    assert run_count(engine) == 3


def test_timestamped_signatures_expire(db_url: str) -> None:
    clock = FakeClock()
    with plait.Engine(db_url, clock=clock) as engine:
        engine.http_trigger("signed", checkout, secret=SECRET, signature="timestamped", max_age=timedelta(minutes=5))
        body = json.dumps(ORDER).encode()
        signed = {"X-Plait-Signature": stamp(body, int(clock.now().timestamp())), **JSON}
        with serving(create_app(engine)) as url:
            accepted = [httpx.post(f"{url}/hooks/signed", content=body, headers=signed) for _ in range(2)]
            assert {r.status_code for r in accepted} == {202}
            assert len({r.json()["run_id"] for r in accepted}) == 1  # a replay inside the window: the same run
            clock.advance(timedelta(minutes=6))
            late = httpx.post(f"{url}/hooks/signed", content=body, headers=signed)
            assert late.status_code == 401 and "timestamp" in late.json()["error"]["message"]
            fresh = {"X-Plait-Signature": stamp(body, int(clock.now().timestamp())), **JSON}
            assert httpx.post(f"{url}/hooks/signed", content=body, headers=fresh).status_code == 202
            forged = {"X-Plait-Signature": stamp(body, int(clock.now().timestamp()), secret="guess"), **JSON}
            assert httpx.post(f"{url}/hooks/signed", content=body, headers=forged).status_code == 401
            unstamped = {"X-Plait-Signature": sign(body), **JSON}
            assert httpx.post(f"{url}/hooks/signed", content=body, headers=unstamped).status_code == 401


# -- 19: hostile values get a 4xx with the structured error -----------------------------------------------


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_hostile_values_get_a_structured_4xx(engine: plait.Engine) -> None:
    waiting_run = engine.start(waiting, ORDER).id
    engine.get_run(waiting_run)
    order = json.dumps(ORDER)
    posts = {
        "priority 2**70": ("/api/workflows/checkout/runs", f'{{"input": {order}, "priority": {2**70}}}'),
        "priority 2**40": ("/api/workflows/checkout/runs", f'{{"input": {order}, "priority": {2**40}}}'),
        "surrogate in input": ("/api/workflows/checkout/runs", '{"input": {"customer": "\\ud800", "amount": 1}}'),
        "surrogate in a key": ("/api/workflows/checkout/runs", f'{{"input": {order}, "metadata": {{"\\udc00": 1}}}}'),
        "deep input": ("/api/workflows/checkout/runs", f'{{"input": {deep(300)}}}'),
        "deep metadata": ("/api/workflows/checkout/runs", f'{{"input": {order}, "metadata": {{"a": {deep(300)}}}}}'),
        "NaN delay": ("/api/workflows/checkout/runs", f'{{"input": {order}, "delay_seconds": NaN}}'),
        "huge integer": ("/api/workflows/checkout/runs", f'{{"input": {{"customer": "a", "amount": {"9" * 5000}}}}}'),
        "surrogate event name": (f"/api/runs/{waiting_run}/events", '{"name": "\\ud800"}'),
        "NUL event id": (f"/api/runs/{waiting_run}/events", '{"name": "paid", "event_id": "a\\u0000"}'),
        "surrogate step_id": (f"/api/runs/{waiting_run}/approve", '{"step_id": "\\ud800"}'),
        "NUL step_id": (f"/api/runs/{waiting_run}/approve", '{"step_id": "\\u0000"}'),
        "deep resume data": (f"/api/runs/{waiting_run}/resume", f'{{"step_id": "paid", "data": {deep(300)}}}'),
        "surrogate from_step": (f"/api/runs/{waiting_run}/rerun", '{"from_step": "\\ud800"}'),
        "deep trigger body": ("/hooks/open", deep(50_000)),
        "surrogate to a trigger": ("/hooks/open", '{"customer": "\\ud800", "amount": 1}'),
    }
    with serving(create_app(engine, max_body_bytes=200_000)) as url, httpx.Client(base_url=url, timeout=10) as client:
        for name, (path, body) in posts.items():
            answer = client.post(path, content=body.encode(), headers=JSON)
            assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text)
            assert answer.json()["error"]["code"] and answer.json()["error"]["message"], name
        gets = {
            "NUL in a run id": "/api/runs/a%00b",
            "NUL in a workflow filter": "/api/runs?workflow=a%00b",
            "NUL in a cursor": "/api/runs?cursor=%00",
            "huge after": f"/api/runs/{waiting_run}/events?after={2**70}",
        }
        for name, path in gets.items():
            answer = client.get(path)
            assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text)
        for garbage in (b"\xb2", b"9" * 5000, str(2**70).encode(), b"-1"):
            for path in (f"/api/runs/{waiting_run}/events", "/api/events"):
                # Refused before the stream starts: a 200 followed by a broken stream is no answer.
                answer = client.get(path, headers={b"Last-Event-ID": garbage})
                assert answer.status_code == 422, (path, garbage[:10], answer.text)
                assert answer.json()["error"]["code"] == "input.invalid"
        signature = client.post("/hooks/github", content=b"{}", headers={b"X-Hub-Signature-256": b"sha256=\xb2\xff"})
        assert signature.status_code == 401 and signature.json()["error"]["code"] == "auth.signature"
        chunked = client.post("/hooks/open", content=iter([b"[" * 100_000, b"]" * 100_001]), headers=JSON)
        assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "request.too_large"
    assert run_count(engine) == 0


def test_a_priority_beyond_32_bits_is_an_input_error(engine: plait.Engine) -> None:
    for priority in (2**31, -(2**31) - 1, 2**40, 2**70):
        with pytest.raises(plait.InputValidationError, match="priority"):
            engine.start(checkout, ORDER, priority=priority)
    assert engine.start(checkout, ORDER, priority=2**31 - 1).result(timeout=10) == "charged ada 5"
