"""A hand-written fuzz of the HTTP API on a real uvicorn server, on both backends: no hostile value gets a 5xx.

Every string and integer field, path segment, query parameter and id header
is drawn from values that broke plait before: lone surrogates, NUL bytes,
integers past 32 and 64 bits or past Python's digit limit, non-JSON numbers
and nesting hundreds or thousands deep.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import plait
from plait.http import create_app
from tests.e2e.servers import serving
from tests.e2e.test_http import checkout, waiting

NASTY_TEXT = ["\ud800", "\udfff", "a\udc00b", "\x00", "a\x00b", "", " ", "x" * 600, "é", "💥", "../x", "%00", "0"]
NASTY_INTEGERS = [2**70, -(2**70), 2**64, 2**63, 2**40, 2**31, -(2**31) - 1, 2**31 - 1, -1, 0]
# JSON text that json.dumps cannot produce.
NASTY_RAW = ["9" * 5000, "-" + "9" * 4400, "NaN", "Infinity", "-Infinity", "1e400", "[" * 300 + "]" * 300]
NASTY_RAW += ['{"a": ' * 260 + "1" + "}" * 260, "[" * 5000 + "]" * 5000]


def raw(value: Any) -> str:
    """JSON text; lone surrogates and NUL become \\u escapes, as a hostile client would send them."""
    return json.dumps(value, ensure_ascii=True)


scalars = st.one_of(
    st.sampled_from(NASTY_TEXT).map(raw),
    st.sampled_from(NASTY_INTEGERS).map(str),
    st.sampled_from(NASTY_RAW),
    st.text(max_size=20).map(raw),
    st.integers().map(str),
    st.floats().map(lambda f: raw(f) if f == f and abs(f) != float("inf") else "NaN"),
    st.sampled_from(["true", "null", "{}", "[]"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
        st.dictionaries(st.sampled_from([*NASTY_TEXT, "customer", "amount"]).map(raw), inner, max_size=3).map(
            lambda fields: "{" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}"
        ),
    ),
    max_leaves=6,
)
texts = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=12))
integers = st.one_of(st.sampled_from(NASTY_INTEGERS), st.integers())


def obj(**fields: str | None) -> str:
    return "{" + ", ".join(f"{raw(k)}: {v}" for k, v in fields.items() if v is not None) + "}"


def segment(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def header(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@dataclass
class Call:
    method: str
    path: str
    body: str | None = None
    headers: dict[str, bytes] | None = None


@dataclass
class Target:
    url: str
    finished: str  # a run that succeeded
    waiting: str  # a run waiting for an event


@st.composite
def calls(draw: st.DrawFn, target: Target) -> Call:
    run = draw(st.one_of(st.sampled_from([target.finished, target.waiting]), texts.map(segment)))
    maybe = st.one_of(st.none(), values)
    kind = draw(st.integers(min_value=0, max_value=10))
    if kind == 0:
        workflow = draw(st.one_of(st.just("checkout"), texts.map(segment)))
        # One field hostile at a time (or none), so that the others do not hide it behind a 422.
        hostile = draw(st.sampled_from(["input", "priority", "delay_seconds", "metadata", None]))
        fields = {"input": '{"customer": "a", "amount": 1}', "priority": "0", "delay_seconds": "0", "metadata": "{}"}
        if hostile == "priority":
            fields["priority"] = draw(st.one_of(integers.map(str), values))
        elif hostile is not None:
            fields[hostile] = draw(values)
        key = draw(st.one_of(st.none(), texts))
        headers = {"Idempotency-Key": header(key)} if key else None
        return Call("POST", f"/api/workflows/{workflow}/runs", obj(**fields), headers)
    if kind == 1:
        query = {
            "workflow": draw(texts),
            "status": draw(st.sampled_from(["failed", "succeeded", "\x00", "\ud800"])),
            "limit": str(draw(integers)),
            "cursor": draw(texts),
        }
        chosen = draw(st.sets(st.sampled_from(sorted(query))))
        return Call("GET", "/api/runs?" + "&".join(f"{k}={segment(query[k])}" for k in sorted(chosen)))
    if kind == 2:
        return Call("GET", f"/api/runs/{run}")
    if kind == 3:
        return Call("POST", f"/api/runs/{run}/{draw(st.sampled_from(['cancel', 'retry']))}")
    if kind == 4:
        return Call("POST", f"/api/runs/{run}/rerun", obj(from_step=draw(st.one_of(texts.map(raw), values))))
    if kind == 5:
        name = draw(st.one_of(st.just(raw("paid")), texts.map(raw), values))
        return Call("POST", f"/api/runs/{run}/events", obj(name=name, payload=draw(maybe), event_id=draw(maybe)))
    if kind == 6:
        action = draw(st.sampled_from(["approve", "reject", "resume"]))
        step = draw(st.one_of(st.just(raw("paid")), texts.map(raw), values))
        body = obj(step_id=step, data=draw(maybe), reason=draw(st.one_of(st.none(), texts.map(raw), values)))
        return Call("POST", f"/api/runs/{run}/{action}", body)
    if kind == 7:
        after = draw(st.one_of(integers.map(str), texts.map(segment)))
        last = draw(st.one_of(st.none(), texts, integers.map(str)))
        headers = {"Last-Event-ID": header(last)} if last else None
        return Call("GET", f"/api/runs/{target.finished}/events?after={after}", None, headers)
    if kind == 8:
        cursor = draw(st.one_of(texts, integers.map(str), st.just("1:2")))
        return Call("GET", "/api/events", None, {"Last-Event-ID": header(cursor)} if cursor else None)
    if kind == 9:
        signature = draw(st.one_of(texts, st.binary(max_size=20).map(lambda b: b.decode("latin-1"))))
        return Call("POST", "/hooks/signed", draw(values), {"X-Hub-Signature-256": header(signature)})
    return Call("POST", "/hooks/open", draw(values))


def is_sendable(headers: dict[str, bytes] | None) -> bool:
    # What HTTP/1.1 itself cannot carry never reaches plait: h11 refuses it in the client.
    return all(not any(b < 0x20 or b == 0x7F for b in v) for v in (headers or {}).values())


@pytest.fixture
def target(db_url: str) -> Iterator[Target]:
    with plait.Engine(db_url) as engine:
        engine.register(checkout, waiting)
        engine.http_trigger("open", checkout)
        engine.http_trigger("signed", checkout, secret="s")
        finished = engine.start(checkout, {"customer": "seed", "amount": 1})
        finished.result(timeout=10)
        waiting_run = engine.start(waiting, {"customer": "seed", "amount": 1})
        with serving(create_app(engine, max_body_bytes=256 * 1024)) as url:
            yield Target(url, finished.id, waiting_run.id)


@pytest.mark.timeout(180)
def test_no_hostile_value_gets_a_server_error(target: Target) -> None:
    client = httpx.Client(base_url=target.url, timeout=30)

    @settings(max_examples=150, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(call=calls(target))
    def exercise(call: Call) -> None:
        if not is_sendable(call.headers):
            return
        headers: dict[str, Any] = {**(call.headers or {})}
        if call.body is not None:
            headers["content-type"] = "application/json"
        content = None if call.body is None else call.body.encode("utf-8", "surrogatepass")
        request = client.build_request(call.method, call.path, content=content, headers=headers)
        response = client.send(request, stream=True)
        try:
            assert response.status_code < 500, (call, response.status_code, response.read()[:300])
            if response.status_code >= 400:
                error = json.loads(response.read())["error"]
                assert error["code"] and error["message"], (call, error)
        finally:
            response.close()  # a 200 event stream may go on: its status is all that is checked

    with client:
        exercise()
