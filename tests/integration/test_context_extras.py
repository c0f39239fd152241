"""What a step sees besides its value: metadata, optional results, child runs it starts, structured logs."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

import plait


@plait.step
def who_asked(ctx: plait.Context, value: int) -> str:
    return str(ctx.metadata.get("requested_by", "nobody"))


def test_ctx_metadata_is_the_runs_metadata(engine: plait.Engine) -> None:
    flow = plait.workflow("who", input=int).then(who_asked).commit()
    assert engine.start(flow, 1, metadata={"requested_by": "ana"}).result(timeout=30) == "ana"
    assert engine.start(flow, 2).result(timeout=30) == "nobody"


@plait.step(on_error="skip")
def maybe(value: int) -> int:
    raise RuntimeError("no luck")


@plait.step
def report(ctx: plait.Context, value: int) -> str:
    return f"maybe={ctx.result_or_none(maybe)} later={ctx.result_or_none(later)}"


@plait.step
def later(value: str) -> str:
    return value


def test_result_or_none_is_none_for_a_step_without_result(engine: plait.Engine) -> None:
    flow = plait.workflow("optional", input=int).then(maybe).then(report).then(later).commit()
    assert engine.start(flow, 1).result(timeout=30) == "maybe=None later=None"


class Card(BaseModel):
    number: SecretStr


class Unprintable:
    def __str__(self) -> str:
        raise ValueError("no")


@plait.step
def chatty(ctx: plait.Context, value: int) -> int:
    ctx.log.info("charged", amount=value, currency="EUR", card=Card(number=SecretStr("4242")))
    ctx.log.info("x", {"k": 1})  # a dict where fields were meant
    ctx.log.info("%d items", "many")  # arguments that do not format
    ctx.log.warning("odd %s", Unprintable(), thing=Unprintable())
    ctx.log.info(12345, object())
    ctx.log.error("%(who)s failed", {"who": "bank"})
    return value


def test_log_fields_are_kept_and_a_log_call_never_raises(engine: plait.Engine) -> None:
    flow = plait.workflow("chatty", input=int).then(chatty).commit()
    run = engine.start(flow, 7)
    assert run.result(timeout=30) == 7
    logs = [e.payload for e in run.events(follow=False) if e.type == "step.log"]
    assert logs[0] == {
        "level": "info",
        "message": "charged",
        "fields": {"amount": 7, "currency": "EUR", "card": {"number": "**********"}},
    }
    assert logs[1] == {"level": "info", "message": "x", "fields": {"k": 1}}
    assert logs[2] == {"level": "info", "message": "%d items many"}
    assert logs[3]["level"] == "warning" and logs[3]["message"].startswith("odd")
    assert logs[3]["fields"] == {"thing": "<unprintable Unprintable>"}
    assert logs[4]["message"].startswith("12345 <object object")
    assert logs[5] == {"level": "error", "message": "bank failed", "fields": {"who": "bank"}}
    assert "4242" not in str(logs)


# -- ctx.start_child -----------------------------------------------------------


@plait.step
def welcome(value: str) -> str:
    return f"welcome {value}"


onboarding = plait.workflow("onboarding", input=str).then(welcome).commit()
attempts: dict[str, int] = {}
lock = threading.Lock()


@plait.step(retry=plait.Retry(max_attempts=3, initial=0, jitter=0))
def fan_out(ctx: plait.Context, names: list[str]) -> list[str]:
    handles = [ctx.start_child(onboarding, name, key=name) for name in names]
    again = ctx.start_child(onboarding, names[0], key=names[0])  # the same key: the same child
    assert again.id == handles[0].id
    with lock:
        attempts[ctx.run_id] = attempts.get(ctx.run_id, 0) + 1
        if attempts[ctx.run_id] < 3:
            raise RuntimeError("fail after starting the children")
    return [handle.result(timeout=30) for handle in handles]


@plait.step
async def async_fan_out(ctx: plait.Context, name: str) -> str:
    child = await ctx.astart_child("onboarding", name)
    result: str = await child.aresult(timeout=30)
    return result


@plait.step
async def wrong_twin(ctx: plait.Context, name: str) -> str:
    return ctx.start_child(onboarding, name).id


def test_start_child_starts_one_linked_child_per_key_across_retries(engine: plait.Engine) -> None:
    engine.register(onboarding)
    flow = plait.workflow("signup_batch", input=list[str]).then(fan_out).commit()
    run = engine.start(flow, ["ana", "bo"])
    assert run.result(timeout=30) == ["welcome ana", "welcome bo"]
    assert [s.status for s in run.steps()] == ["failed", "failed", "succeeded"]
    children = engine.list_runs(parent=run.id).items
    assert sorted(c.input for c in children) == ["ana", "bo"]
    assert all(c.parent_run_id == run.id and c.workflow_id == "onboarding" for c in children)
    assert engine.count_runs(workflow="onboarding") == 2


def test_start_child_from_an_async_step(engine: plait.Engine) -> None:
    engine.register(onboarding)
    flow = plait.workflow("async_parent", input=str).then(async_fan_out).commit()
    run = engine.start(flow, "cy")
    assert run.result(timeout=30) == "welcome cy"
    (child,) = engine.list_runs(parent=run.id).items
    assert child.status == plait.RunStatus.SUCCEEDED


def test_the_blocking_twin_in_an_async_step_says_which_to_use(engine: plait.Engine) -> None:
    flow = plait.workflow("wrong_twin", input=str).then(wrong_twin).commit()
    with pytest.raises(plait.RunFailed) as failed:
        engine.start(flow, "di").result(timeout=30)
    assert "await ctx.astart_child" in failed.value.error["message"]
    assert engine.list_runs(workflow="onboarding").items == []


def test_cancelling_the_parent_cancels_children_it_started(engine: plait.Engine) -> None:
    waits = plait.workflow("child_waits", input=str).wait_for_event("go", schema=dict[str, Any]).commit()

    @plait.step
    def start_waiter(ctx: plait.Context, name: str) -> str:
        return ctx.start_child(waits, name).id

    parent = plait.workflow("parent_waits", input=str).then(start_waiter).wait_for_event("go", schema=dict).commit()
    run = engine.start(parent, "ed")
    engine.run_until_idle()
    (child,) = engine.list_runs(parent=run.id).items
    assert run.cancel(reason="batch aborted")
    assert engine.get_run(child.id).info().cancel_reason == "batch aborted"
    assert engine.get_run(child.id).status == plait.RunStatus.CANCELLED
