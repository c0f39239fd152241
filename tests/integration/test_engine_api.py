"""The engine's public API against a real SQLite file: starting, reading and acting on runs."""

from __future__ import annotations

import asyncio
import threading

import pytest
from pydantic import BaseModel

import plait
from tests.conftest import run_sql


class Signup(BaseModel):
    email: str
    age: int


@plait.step
def greet(signup: Signup) -> str:
    return f"hi {signup.email}"


greeting = plait.workflow("greeting", input=Signup, output=str).then(greet).commit()


def count_runs(db_url: str) -> int:
    return int(run_sql(db_url, "SELECT count(*) FROM plait_runs")[0][0])


def test_input_as_dict_or_model_gives_the_typed_result(engine: plait.Engine) -> None:
    assert engine.start(greeting, {"email": "a@x", "age": 3}).result(timeout=10) == "hi a@x"
    assert engine.start(greeting, Signup(email="b@x", age=4)).result(timeout=10) == "hi b@x"
    assert engine.start("greeting", {"email": "c@x", "age": 5}).result(timeout=10) == "hi c@x"


def test_invalid_input_raises_with_details_and_creates_no_run(engine: plait.Engine, db_url: str) -> None:
    engine.register(greeting)
    with pytest.raises(plait.InputValidationError) as caught:
        engine.start(greeting, {"email": "a@x", "age": "old"})
    assert caught.value.code == "input.invalid"
    assert caught.value.errors[0]["loc"] == ["age"]
    assert "greeting" in caught.value.message
    assert count_runs(db_url) == 0


def test_unknown_workflow_id_raises_workflow_not_found(engine: plait.Engine) -> None:
    with pytest.raises(plait.WorkflowNotFound, match="register"):
        engine.start("nope", {})


def test_same_idempotency_key_from_eight_threads_gives_one_run(engine: plait.Engine, db_url: str) -> None:
    barrier = threading.Barrier(8)
    ids: list[str] = []
    lock = threading.Lock()

    def start() -> None:
        barrier.wait()
        run = engine.start(greeting, {"email": "a@x", "age": 1}, idempotency_key="signup-42")
        with lock:
            ids.append(run.id)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1
    assert count_runs(db_url) == 1
    assert engine.get_run(ids[0]).result(timeout=10) == "hi a@x"


def test_same_idempotency_key_from_two_engines_on_one_file_gives_one_run(db_url: str) -> None:
    with plait.Engine(db_url, worker=False) as first, plait.Engine(db_url, worker=False) as second:
        a = first.start(greeting, {"email": "a@x", "age": 1}, idempotency_key="k")
        b = second.start(greeting, {"email": "a@x", "age": 1}, idempotency_key="k")
        assert a.id == b.id


def test_explicit_run_id_is_idempotent(engine: plait.Engine) -> None:
    first = engine.start(greeting, {"email": "a@x", "age": 1}, run_id="order-1")
    second = engine.start(greeting, {"email": "a@x", "age": 1}, run_id="order-1")
    assert first.id == second.id == "order-1"


def test_non_serializable_output_fails_the_step_and_the_run_clearly(engine: plait.Engine) -> None:
    @plait.step
    def first(x: int) -> int:
        return x + 1

    @plait.step
    def leaky(x: int) -> object:
        return threading.Lock()

    flow = plait.workflow("leaky_flow", input=int).then(first).then(leaky).commit()
    run = engine.start(flow, 1)
    with pytest.raises(plait.RunFailed) as caught:
        run.result(timeout=10)
    assert caught.value.error["code"] == "step.output_invalid"
    assert caught.value.error["step_id"] == "leaky"
    assert "cannot be stored as JSON" in caught.value.error["message"]
    steps = run.steps()
    assert [(s.step_id, s.status) for s in steps] == [("first", "succeeded"), ("leaky", "failed")]
    assert steps[0].output == 2
    assert run.status == plait.RunStatus.FAILED


def test_wrong_output_shape_names_the_step_and_the_field(engine: plait.Engine) -> None:
    @plait.step
    def bad(x: int) -> Signup:
        return {"email": "a@x", "age": "many"}  # type: ignore[return-value]

    flow = plait.workflow("bad_shape", input=int).then(bad).commit()
    with pytest.raises(plait.RunFailed) as caught:
        engine.start(flow, 1).result(timeout=10)
    assert caught.value.error["code"] == "step.output_invalid"
    assert "'bad'" in caught.value.error["message"]
    assert "fields: age" in caught.value.error["message"]


def test_payload_limit_fails_the_step_with_a_clear_error(db_url: str) -> None:
    @plait.step
    def big(x: int) -> str:
        return "x" * 5000

    flow = plait.workflow("big_flow", input=int).then(big).commit()
    with plait.Engine(db_url, max_payload_bytes=1000) as engine, pytest.raises(plait.RunFailed, match="payload limit"):
        engine.start(flow, 1).result(timeout=10)


def test_retry_with_backoff_then_success(engine: plait.Engine) -> None:
    calls: list[int] = []

    @plait.step(retry=plait.Retry(max_attempts=3, initial=0))
    def flaky(ctx: plait.Context, x: int) -> int:
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("try again")
        return x

    flow = plait.workflow("flaky_flow", input=int).then(flaky).commit()
    run = engine.start(flow, 7)
    assert run.result(timeout=10) == 7
    assert calls == [1, 2, 3]
    assert [(s.attempt, s.status) for s in run.steps()] == [(1, "failed"), (2, "failed"), (3, "succeeded")]


def test_retry_on_limits_which_errors_are_retried(engine: plait.Engine) -> None:
    calls = 0

    @plait.step(retry=plait.Retry(max_attempts=5, initial=0, retry_on=(ConnectionError,)))
    def picky(x: int) -> int:
        nonlocal calls
        calls += 1
        raise ValueError("not retryable")

    flow = plait.workflow("picky_flow", input=int).then(picky).commit()
    with pytest.raises(plait.RunFailed, match="ValueError: not retryable"):
        engine.start(flow, 1).result(timeout=10)
    assert calls == 1


def test_retry_backoff_waits_on_the_clock(db_url: str) -> None:
    from plait.testing import FakeClock

    clock = FakeClock()
    attempts: list[int] = []

    @plait.step(retry=plait.Retry(max_attempts=2, initial=3600, max_delay=7200, jitter=0))
    def hourly(ctx: plait.Context, x: int) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ConnectionError("down")
        return x

    flow = plait.workflow("hourly_flow", input=int).then(hourly).commit()
    with plait.Engine(db_url, clock=clock) as engine:
        run = engine.start(flow, 1)
        engine.run_until_idle()
        assert attempts == [1]
        info = run.info()
        assert info.status == plait.RunStatus.WAITING  # a long back-off parks the run: no lease, no coroutine
        assert info.wait is not None and info.wait["kind"] == "retry" and info.wait["attempt"] == 2
        clock.advance(minutes=59)
        engine.run_until_idle()
        assert attempts == [1]
        clock.advance(minutes=1)
        assert run.result(timeout=10) == 1
        assert attempts == [1, 2]


def test_timeout_cancels_the_attempt(engine: plait.Engine) -> None:
    @plait.step(timeout=0.05)
    async def stuck(x: int) -> int:
        await asyncio.Event().wait()
        return x

    flow = plait.workflow("stuck_flow", input=int).then(stuck).commit()
    with pytest.raises(plait.RunFailed) as caught:
        engine.start(flow, 1).result(timeout=10)
    assert caught.value.error["code"] == "step.timeout"


def test_on_error_skip_and_continue(engine: plait.Engine) -> None:
    @plait.step(on_error="skip")
    def optional_enrich(x: int) -> int:
        raise RuntimeError("enrichment down")

    @plait.step(on_error="continue")
    def optional_lookup(x: int) -> int | None:
        raise RuntimeError("lookup down")

    @plait.step
    def describe(x: int | None) -> str:
        return f"got {x}"

    skip_flow = plait.workflow("skipping", input=int).then(optional_enrich).then(describe).commit()
    cont_flow = plait.workflow("continuing", input=int).then(optional_lookup).then(describe.with_options(id="d2"))
    run = engine.start(skip_flow, 5)
    assert run.result(timeout=10) == "got 5"
    assert [s.status for s in run.steps()] == ["skipped", "succeeded"]
    assert engine.start(cont_flow.commit(), 5).result(timeout=10) == "got None"


def test_cancel_stops_a_running_run_and_discards_its_late_result(engine: plait.Engine) -> None:
    entered = threading.Event()
    release = threading.Event()
    after: list[int] = []

    @plait.step
    def slow(ctx: plait.Context, x: int) -> int:
        entered.set()
        release.wait(10)
        return x

    @plait.step
    def later(x: int) -> int:
        after.append(x)
        return x

    flow = plait.workflow("cancellable", input=int).then(slow).then(later).commit()
    run = engine.start(flow, 1)
    assert entered.wait(10)
    assert run.cancel() is True
    release.set()
    with pytest.raises(plait.RunCancelled):
        run.result(timeout=10)
    assert run.status == plait.RunStatus.CANCELLED
    assert run.steps() == []
    assert after == []
    assert run.cancel() is False


def test_ctx_cancelled_turns_true_for_a_sync_step(engine: plait.Engine) -> None:
    entered = threading.Event()
    seen = threading.Event()

    @plait.step
    def polite(ctx: plait.Context, x: int) -> int:
        entered.set()
        for _ in range(1000):
            if ctx.cancelled:
                seen.set()
                break
            threading.Event().wait(0.01)
        return x

    flow = plait.workflow("polite_flow", input=int).then(polite).commit()
    run = engine.start(flow, 1)
    assert entered.wait(10)
    run.cancel()
    assert seen.wait(10)


def test_retry_continues_a_failed_run_from_the_failed_step(engine: plait.Engine) -> None:
    calls = {"prepare": 0, "fragile": 0}
    broken = True

    @plait.step
    def prepare(x: int) -> int:
        calls["prepare"] += 1
        return x + 1

    @plait.step
    def fragile(x: int) -> int:
        calls["fragile"] += 1
        if broken:
            raise RuntimeError("broken")
        return x * 10

    flow = plait.workflow("retryable", input=int).then(prepare).then(fragile).commit()
    run = engine.start(flow, 1)
    with pytest.raises(plait.RunFailed, match=r"engine\.retry"):
        run.result(timeout=10)
    broken = False
    same = engine.retry(run.id)
    assert same.id == run.id
    assert same.result(timeout=10) == 20
    assert calls == {"prepare": 1, "fragile": 2}
    assert [(s.step_id, s.attempt, s.status) for s in run.steps()] == [
        ("prepare", 1, "succeeded"),
        ("fragile", 1, "failed"),
        ("fragile", 2, "succeeded"),
    ]


def test_retry_of_a_succeeded_run_is_refused(engine: plait.Engine) -> None:
    run = engine.start(greeting, {"email": "a@x", "age": 1})
    run.result(timeout=10)
    with pytest.raises(plait.RunStateError, match="only failed runs"):
        engine.retry(run.id)


def test_rerun_from_reuses_outputs_before_the_step(engine: plait.Engine) -> None:
    calls: list[str] = []

    @plait.step
    def one(x: int) -> int:
        calls.append("one")
        return x + 1

    @plait.step
    def two(x: int) -> int:
        calls.append("two")
        return x * 2

    @plait.step
    def three(x: int) -> int:
        calls.append("three")
        return x - 3

    flow = plait.workflow("three_steps", input=int).then(one).then(two).then(three).commit()
    first = engine.start(flow, 4)
    assert first.result(timeout=10) == 7
    calls.clear()
    fork = engine.rerun_from(first.id, "two")
    assert fork.id != first.id
    assert fork.result(timeout=10) == 7
    assert calls == ["two", "three"]
    assert fork.info().metadata == {"rerun_of": first.id, "rerun_from": "two"}
    with pytest.raises(plait.InputValidationError, match="no step 'nine'"):
        engine.rerun_from(first.id, "nine")


def test_get_run_of_unknown_id_raises_run_not_found(engine: plait.Engine) -> None:
    with pytest.raises(plait.RunNotFound):
        engine.get_run("missing")


def test_list_runs_filters_and_pages_with_a_cursor(engine: plait.Engine) -> None:
    @plait.step
    def fail(x: int) -> int:
        raise RuntimeError("no")

    failing = plait.workflow("failing", input=int).then(fail).commit()
    for i in range(7):
        engine.start(greeting, {"email": f"{i}@x", "age": i}).result(timeout=10)
    bad = engine.start(failing, 1)
    with pytest.raises(plait.RunFailed):
        bad.result(timeout=10)
    seen: list[str] = []
    cursor = None
    while True:
        page = engine.list_runs(workflow="greeting", limit=3, cursor=cursor)
        seen.extend(r.id for r in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7
    assert [r.id for r in engine.list_runs(status="failed").items] == [bad.id]
    assert engine.list_runs(status=plait.RunStatus.SUCCEEDED, limit=100).items[0].workflow_id == "greeting"
    with pytest.raises(plait.InputValidationError):
        engine.list_runs(status="sleeping")
    with pytest.raises(plait.InputValidationError):
        engine.list_runs(cursor="garbage")


def test_namespaces_on_one_database_never_see_each_other(db_url: str) -> None:
    with plait.Engine(db_url, namespace="a") as a, plait.Engine(db_url, namespace="b") as b:
        run = a.start(greeting, {"email": "a@x", "age": 1})
        assert run.result(timeout=10) == "hi a@x"
        assert b.list_runs().items == []
        with pytest.raises(plait.RunNotFound):
            b.get_run(run.id)
        with pytest.raises(plait.RunNotFound):
            b.cancel(run.id)


def test_delayed_start_waits_for_the_clock(db_url: str) -> None:
    from plait.testing import FakeClock

    clock = FakeClock()
    with plait.Engine(db_url, clock=clock) as engine:
        run = engine.start(greeting, {"email": "a@x", "age": 1}, delay=600)
        with pytest.raises(TimeoutError):
            run.result(timeout=0.3)
        assert run.status == plait.RunStatus.PENDING
        clock.advance(minutes=10)
        assert run.result(timeout=10) == "hi a@x"


def test_priority_orders_claims(db_url: str) -> None:
    order: list[int] = []

    @plait.step
    def record(x: int) -> int:
        order.append(x)
        return x

    flow = plait.workflow("prioritized", input=int).then(record).commit()
    with plait.Engine(db_url, worker=False) as client:
        runs = [client.start(flow, i, priority=i) for i in (1, 5, 3)]
    with plait.Engine(db_url, concurrency=1) as engine:
        engine.register(flow)
        for run in runs:
            engine.get_run(run.id).result(timeout=10)
    assert order == [5, 3, 1]


def test_async_twins(engine: plait.Engine) -> None:
    async def main() -> str:
        run = await engine.astart(greeting, {"email": "z@x", "age": 1})
        steps_before = await run.asteps()
        result = await run.aresult(timeout=10)
        assert [s.step_id for s in await run.asteps()] == ["greet"]
        assert isinstance(steps_before, list)
        assert (await engine.aget_run(run.id)).id == run.id
        assert (await engine.alist_runs()).items[0].id == run.id
        return result

    assert asyncio.run(main()) == "hi z@x"


def test_workflow_as_object_or_id_and_duplicate_versions(engine: plait.Engine) -> None:
    other = plait.workflow("greeting", input=int, version=greeting.version).then(
        plait.create_step(id="x", input=int, output=int, execute=lambda ctx, v: v)
    )
    engine.register(greeting)
    with pytest.raises(plait.DuplicateWorkflow):
        engine.register(other.commit())
    engine.register(greeting)  # the same object again is fine


def test_oversized_input_is_refused_before_a_run_exists(db_url: str) -> None:
    with plait.Engine(db_url, max_payload_bytes=100) as engine:
        with pytest.raises(plait.InputValidationError, match="payload limit"):
            engine.start(greeting, {"email": "x" * 200, "age": 1})
        assert engine.list_runs().items == []


def test_cancelling_a_parent_cancels_its_running_child(engine: plait.Engine) -> None:
    entered = threading.Event()
    release = threading.Event()

    @plait.step
    def wait_inside(x: int) -> int:
        entered.set()
        release.wait(10)
        return x

    child = plait.workflow("slow_child", input=int).then(wait_inside).commit()
    parent = plait.workflow("parent_of_slow", input=int).then(child).commit()
    run = engine.start(parent, 1)
    assert entered.wait(10)
    run.cancel()
    release.set()
    with pytest.raises(plait.RunCancelled):
        run.result(timeout=10)
    children = engine.list_runs(workflow="slow_child").items
    assert [c.status for c in children] == [plait.RunStatus.CANCELLED]
    assert children[0].parent_run_id == run.id


def test_retrying_a_parent_reopens_its_failed_child(engine: plait.Engine) -> None:
    broken = True

    @plait.step
    def inner(x: int) -> int:
        if broken:
            raise RuntimeError("inner broke")
        return x + 1

    child = plait.workflow("fragile_child", input=int).then(inner).commit()
    parent = plait.workflow("retry_parent", input=int).then(child).commit()
    run = engine.start(parent, 1)
    with pytest.raises(plait.RunFailed, match="child run"):
        run.result(timeout=10)
    broken = False
    assert engine.retry(run.id).result(timeout=10) == 2
    assert [c.status for c in engine.list_runs(workflow="fragile_child").items] == [plait.RunStatus.SUCCEEDED]


def test_list_runs_finds_a_run_by_idempotency_key_and_a_parent_s_children(engine: plait.Engine) -> None:
    parent = plait.workflow("parent_of_greeting", input=Signup).then(greeting).commit()
    engine.register(greeting, parent)
    keyed = engine.start(greeting, {"email": "k@x", "age": 1}, idempotency_key="signup-k")
    engine.start(greeting, {"email": "other@x", "age": 2}, idempotency_key="signup-other")
    found = engine.list_runs(idempotency_key="signup-k")
    assert [run.id for run in found.items] == [keyed.id]
    assert engine.list_runs(idempotency_key="no-such-key").items == []

    outer = engine.start(parent, {"email": "p@x", "age": 3})
    assert outer.result(timeout=10) == "hi p@x"
    children = engine.list_runs(parent_run_id=outer.id).items
    assert len(children) == 1 and children[0].workflow_id == "greeting" and children[0].parent_run_id == outer.id
