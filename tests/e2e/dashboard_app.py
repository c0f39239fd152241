"""Workflows and a real server for the dashboard's browser tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from pydantic import BaseModel

import plait
from plait.http import create_app
from plait.store import tokens as token_table

XSS = "<script>window.__pwned = 1</script><img src=x onerror=window.__pwned=1>"
switch = {"fail": True}


class Order(BaseModel):
    customer: str
    amount: int


class Review(BaseModel):
    note: str
    amount: int


class Go(BaseModel):
    ok: bool = True


@plait.step
async def prepare(order: Order) -> Order:
    return order


@plait.step
async def charge(ctx: plait.Context, order: Order) -> str:
    ctx.log.info("charging %s", order.customer)
    if switch["fail"]:
        raise RuntimeError(f"card declined for {order.customer}")
    return f"charged {order.customer} {order.amount}"


@plait.step
async def shout(ctx: plait.Context, text: str) -> str:
    ctx.log.info(XSS)
    if text == "fail":
        raise ValueError(XSS)
    return XSS


@plait.step
async def settle(decision: plait.Approval[Review]) -> str:
    return f"approved={decision.approved} note={decision.data.note if decision.data else ''}"


@plait.step
async def think(ctx: plait.Context, prompt: str) -> str:
    ctx.record_usage(model="gpt-4o", input_tokens=1000, output_tokens=200, cost=0.5)
    if prompt == XSS:
        ctx.record_usage(model=XSS, input_tokens=1, output_tokens=1, cost=0.25)
    artifacts = getattr(ctx, "artifacts", None)  # engines with artifacts keep one per run
    if artifacts is not None:
        artifacts.put("notes/answer.txt", f"answer to {prompt}")
    return f"answer to {prompt}"


many_flow = plait.workflow("many", input=int)
for _i in range(25):
    many_flow = many_flow.then(plait.create_step(id=f"m{_i:02}", input=int, output=int, execute=lambda ctx, x: x + 1))
many = many_flow.commit()
priced = plait.workflow("priced", input=str).then(think).commit()
checkout = plait.workflow("checkout", input=Order).then(prepare).then(charge).commit()
payload = plait.workflow("payload", input=str).then(shout).commit()
approvals = plait.workflow("approvals", input=int).then(plait.approval("review", schema=Review)).then(settle).commit()
parked = plait.workflow("parked", input=int).wait_for_event("go", schema=Go).commit()
WORKFLOWS = (checkout, payload, approvals, parked, priced, many)


@dataclass
class Dashboard:
    url: str
    engine: plait.Engine

    def token(self, namespace: str, scope: str) -> str:
        _, value = self.engine._loop.run(token_table.create(self.engine._store, namespace, scope, time.time()))
        return value


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve(url: str) -> Iterator[Dashboard]:
    """A real uvicorn on 127.0.0.1 serving ``create_app`` over an engine with a worker."""
    switch["fail"] = True
    with plait.Engine(url) as engine:
        engine.register(*WORKFLOWS)
        port = free_port()
        config = uvicorn.Config(create_app(engine), port=port, log_level="error", timeout_graceful_shutdown=1)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.01)  # the server thread starting up
        try:
            yield Dashboard(f"http://127.0.0.1:{port}", engine)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
