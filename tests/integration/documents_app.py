"""Document runs in a real process, for the SIGKILL tests.

python documents_app.py DB LOG MODE RUN_ID...

MODE "block_inside": the document's block s3 hangs after its side effect;
"run": finish the given runs. "drip_start": start two drip campaigns, park
them, print "parked" and hang; "drip_finish": skip time and finish them.
Every connector call appends a line to LOG (fsynced) so tests count them.
"""

from __future__ import annotations

import os
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

import plait
from plait.testing import FakeClock

DB, LOG, MODE = sys.argv[1], sys.argv[2], sys.argv[3]
START = datetime(2030, 1, 1, tzinfo=UTC)


def record(line: str) -> None:
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{line}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


class StepParams(BaseModel):
    name: str
    value: int


class Value(BaseModel):
    value: int


@plait.connector(type="test.step")
def step(params: StepParams) -> Value:
    record(params.name)
    if params.name == "s3" and MODE == "block_inside":
        threading.Event().wait()
    return Value(value=params.value + 1)


class Mail(BaseModel):
    to: str
    kind: str


class Mailed(BaseModel):
    kind: str


@plait.connector(type="email.send")
def send(ctx: plait.Context, params: Mail) -> Mailed:
    record(f"{params.kind}:{params.to}")
    return Mailed(kind=params.kind)


def chain_document() -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [{"id": "s1", "type": "test.step", "params": {"name": "s1", "value": "{{input.n}}"}}]
    for i in range(2, 6):
        blocks.append(
            {"id": f"s{i}", "type": "test.step", "params": {"name": f"s{i}", "value": f"{{{{s{i - 1}.value}}}}"}}
        )
    return {
        "id": "chain",
        "input": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        "blocks": blocks,
        "output": "{{s5.value}}",
    }


def drip_document() -> dict[str, Any]:
    def mail(block_id: str, kind: str, after: list[str], to: str = "{{input.email}}", **extra: Any) -> dict[str, Any]:
        return {"id": block_id, "type": "email.send", "params": {"to": to, "kind": kind}, "after": after, **extra}

    return {
        "id": "drip",
        "input": {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]},
        "blocks": [
            mail("welcome", "welcome", []),
            {"id": "day1", "type": "wait.duration", "params": {"seconds": 86400}, "after": ["welcome"]},
            mail("tip", "tip", ["day1"]),
            {"id": "day3", "type": "wait.duration", "params": {"seconds": 172800}, "after": ["tip"]},
            {
                "id": "upgrade",
                "type": "wait.event",
                "params": {
                    "name": "upgraded",
                    "timeout_seconds": 7 * 86400,
                    "schema": {"type": "object", "properties": {"plan": {"type": "string"}}, "required": ["plan"]},
                    "default": None,
                },
                "after": ["day3"],
            },
            mail("thanks", "thanks", [], to="{{upgrade.plan}}", when={"ref": "{{upgrade.plan}}", "op": "exists"}),
            mail("nudge", "nudge", ["upgrade"], to="-", when={"ref": "{{upgrade}}", "op": "not_exists"}),
        ],
        "output": "{{thanks.kind}}{{nudge.kind}}",
    }


if __name__ == "__main__":
    if MODE.startswith("drip"):
        clock = FakeClock(START)
        with plait.Engine(f"sqlite:///{DB}", clock=clock) as engine:
            engine.register(send, plait.WorkflowDocument.parse(drip_document()))
            if MODE == "drip_start":
                engine.start("drip", {"email": "ada@x"}, run_id="ada")
                engine.start("drip", {"email": "bob@x"}, run_id="bob")
                engine.run_until_idle()
                print("parked", flush=True)
                threading.Event().wait()
            clock.advance(days=1)
            engine.run_until_idle()
            clock.advance(days=2)
            engine.run_until_idle()
            engine.send_event("ada", "upgraded", {"plan": "pro"})
            engine.run_until_idle()
            clock.advance(days=8)
            engine.run_until_idle()
            for run_id in ("ada", "bob"):
                print(run_id, engine.get_run(run_id).result(timeout=30), flush=True)
    else:
        with plait.Engine(f"sqlite:///{DB}") as engine:
            engine.register(step, plait.WorkflowDocument.parse(chain_document()))
            handles = [engine.start("chain", {"n": 0}, run_id=run_id) for run_id in sys.argv[4:]]
            print("started", flush=True)
            for handle in handles:
                print(handle.id, handle.result(timeout=60), flush=True)
