"""Every failure of user code ends as a stored, coded failure; nothing loops, nothing leaks a secret."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

import plait
from plait.testing import FakeClock
from plait.worker import INTERNAL_STEP, MAX_INTERNAL_ERRORS
from tests.conftest import run_sql

ANY_JSON: Any = Any  # a workflow input of no declared type


def run_failure(run: plait.RunHandle[Any]) -> dict[str, Any]:
    with pytest.raises(plait.RunFailed) as caught:
        run.result(timeout=20)
    return caught.value.error


def feed_types(engine: plait.Engine) -> list[str]:
    """The global feed's event types; PostgreSQL shows an event once no older transaction is still open."""
    deadline = time.monotonic() + 10
    while not (items := engine.events(limit=1000).items):
        assert time.monotonic() < deadline, "the event feed stayed empty"
        time.sleep(0.01)  # another connection's transaction finishing, not a timer
    return [event.type for event in items]


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


@plait.step
def echo(value: Any) -> Any:
    return value


# -- input that cannot be stored is refused at start -----------------------------


@pytest.mark.parametrize(
    ("input_type", "value"),
    [
        (float, float("nan")),
        (float, float("inf")),
        (Any, {"x": [1.0, float("-inf")]}),
        (int, 10**5000),
        (Any, deep(300)),  # Pydantic cannot even write it
        (Any, deep(230)),  # written, but no reader could decode it
        (str, "lone \ud800 surrogate"),
    ],
    ids=["nan", "inf", "nested-inf", "huge-int", "deep-300", "deep-230", "surrogate"],
)
def test_input_that_cannot_be_stored_is_refused_at_start_and_nothing_is_stored(
    engine: plait.Engine, db_url: str, input_type: Any, value: Any
) -> None:
    flow = plait.workflow("takes_anything", input=input_type).then(echo).commit()
    with pytest.raises(plait.InputValidationError) as caught:
        engine.start(flow, value)
    assert caught.value.code == "input.invalid" and "cannot be stored as JSON" in caught.value.message
    assert run_sql(db_url, "SELECT count(*) FROM plait_runs")[0][0] == 0


# -- user code that raises fails its step or its run ------------------------------


def test_a_raising_branch_predicate_fails_the_run_with_a_coded_error(engine: plait.Engine) -> None:
    def explode(value: int) -> bool:
        raise ZeroDivisionError("predicate bug")

    flow = plait.workflow("bad_branch", input=int).branch((explode, echo), default=echo).commit()
    error = run_failure(engine.start(flow, 1))
    assert error["code"] == "step.failed"
    assert "predicate" in error["message"] and "ZeroDivisionError: predicate bug" in error["message"]
    assert "ZeroDivisionError" in error["traceback"]


@pytest.mark.parametrize("until", [lambda value: "tomorrow", lambda value: 1 / 0], ids=["not-a-datetime", "raises"])
def test_a_bad_sleep_until_function_fails_the_run(engine: plait.Engine, until: Any) -> None:
    flow = plait.workflow("bad_sleep", input=int).sleep_until(until).then(echo).commit()
    error = run_failure(engine.start(flow, 1))
    assert error["code"] == "step.failed" and "sleep_until" in error["message"]


def test_foreach_results_over_the_payload_limit_fail_with_a_coded_error(db_url: str) -> None:
    @plait.step
    def widen(n: int) -> str:
        return "x" * 600

    @plait.step
    def count(items: list[str]) -> int:
        return len(items)

    middle = plait.workflow("wide_middle", input=list[int]).foreach(widen).then(count).commit()
    last = plait.workflow("wide_last", input=list[int]).foreach(widen).commit()
    with plait.Engine(db_url, max_payload_bytes=2000) as engine:
        error = run_failure(engine.start(middle, list(range(5))))
        assert error["code"] == "step.output_invalid" and "payload limit" in error["message"]
        error = run_failure(engine.start(last, list(range(5))))
        assert error["code"] == "step.output_invalid" and "workflow's result" in error["message"]


@pytest.mark.parametrize("signal", [SystemExit, KeyboardInterrupt, GeneratorExit])
@pytest.mark.parametrize("kind", ["sync", "async", "async_with_timeout"])
def test_base_exceptions_from_a_step_are_failures_that_honour_retry(
    engine: plait.Engine, signal: type[BaseException], kind: str
) -> None:
    calls: list[int] = []

    def body(ctx: plait.Context, x: int) -> int:
        calls.append(ctx.attempt)
        if ctx.attempt < 2:
            raise signal("stop")
        return x * 10

    async def async_body(ctx: plait.Context, x: int) -> int:
        return body(ctx, x)

    fn = body if kind == "sync" else async_body
    retry = plait.Retry(max_attempts=2, initial=0, retry_on=(BaseException,))
    timeout = 30 if kind == "async_with_timeout" else None  # the attempt then runs in a task of its own
    flaky = plait.step(id="flaky", retry=retry, timeout=timeout)(fn)
    flow = plait.workflow(f"exits_{signal.__name__}_{kind}", input=int).then(flaky).commit()
    assert engine.start(flow, 4).result(timeout=20) == 40
    assert calls == [1, 2]

    @plait.step
    def always(x: int) -> int:
        raise signal("again")

    dead = plait.workflow(f"always_{signal.__name__}_{kind}", input=int).then(always).commit()
    error = run_failure(engine.start(dead, 1))
    assert error["code"] == "step.failed" and error["type"] == signal.__name__
    # The engine's loop survived: it still runs work.
    assert engine.start(plait.workflow("after", input=int).then(echo).commit(), 3).result(timeout=20) == 3


def test_a_map_function_raising_system_exit_fails_the_run(engine: plait.Engine) -> None:
    def leave(value: int) -> int:
        raise SystemExit(3)

    flow = plait.workflow("map_exit", input=int).map(leave).commit()
    error = run_failure(engine.start(flow, 1))
    assert error["code"] == "step.failed" and error["type"] == "SystemExit"


def test_hooks_and_subscribers_raising_base_exceptions_never_break_a_run(
    engine: plait.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def hook(info: plait.HookInfo) -> None:
        raise SystemExit("hook")

    def listener(event: plait.Event) -> None:
        seen.append(event.type)
        raise KeyboardInterrupt

    hooked = plait.workflow("hooked", input=int, hooks=plait.Hooks(before_step=hook, after_run=hook))
    flow = hooked.then(echo).commit()
    subscription = engine.subscribe(listener, types=["run.completed"])
    with caplog.at_level(logging.ERROR):
        assert engine.start(flow, 5).result(timeout=20) == 5
        assert engine.start(flow, 6).result(timeout=20) == 6
    engine.unsubscribe(subscription)
    assert "plait hook" in caplog.text


# -- outputs that cannot be read back are refused when written ---------------------


class Reading(BaseModel):
    value: float


@pytest.mark.parametrize(
    ("output_type", "value"),
    [
        (Any, 10**5000),
        (Any, {"n": [10**4400]}),
        (float, float("nan")),
        (Reading, Reading(value=float("inf"))),
        (Any, deep(230)),
        (Any, "\udfff"),
    ],
    ids=["huge-int", "nested-huge-int", "nan", "inf-in-model", "deep", "surrogate"],
)
def test_a_step_output_that_cannot_be_read_back_fails_the_step(
    engine: plait.Engine, output_type: Any, value: Any
) -> None:
    def produce(ctx: plait.Context, x: int) -> Any:
        return value

    step = plait.create_step(id="produce", input=int, output=output_type, execute=produce)
    flow = plait.workflow("unreadable", input=int).then(step).then(echo).commit()
    run = engine.start(flow, 1)
    error = run_failure(run)
    assert error["code"] == "step.output_invalid" and error["step_id"] == "produce"
    assert [s.status for s in run.steps()] == ["failed"]
    # Every reader still works on this run.
    assert engine.list_runs(limit=10).items[0].id == run.id
    assert [e.type for e in run.events(follow=False)][-1] == "run.failed"
    assert "run.created" in feed_types(engine)


# -- secrets never leak through a validation error ---------------------------------


class Credentials(BaseModel):
    api_key: SecretStr
    user: str


def test_a_secret_in_an_invalid_step_output_is_never_stored_or_shown(engine: plait.Engine, db_url: str) -> None:
    token = "sk-live-never-store-me-7731"

    @plait.step
    def fetch_credentials(x: int) -> Credentials:
        return {"api_key": token}  # type: ignore[return-value]  # "user" is missing

    @plait.step
    def builds_credentials(x: int) -> int:
        Credentials.model_validate({"api_key": token, "user": 5})  # raises, with the secret in its text
        return x

    shown: list[str] = []
    for flow in (
        plait.workflow("leaky_output", input=int).then(fetch_credentials).commit(),
        plait.workflow("leaky_raise", input=int).then(builds_credentials).commit(),
    ):
        run = engine.start(flow, 1)
        with pytest.raises(plait.RunFailed) as caught:
            run.result(timeout=20)
        assert caught.value.error["code"] in ("step.output_invalid", "step.failed")
        assert "api_key" in caught.value.error["message"] or "user" in caught.value.error["message"]
        shown += [str(caught.value), repr(caught.value.error), run.info().model_dump_json()]
        shown += [s.model_dump_json() for s in run.steps()] + [e.model_dump_json() for e in run.events()]
        shown += [page.model_dump_json() for page in [engine.events(limit=1000)]]
    with pytest.raises(plait.InputValidationError) as refused:
        engine.start(plait.workflow("leaky_start", input=Credentials).then(echo).commit(), {"api_key": token})
    shown += [str(refused.value), repr(refused.value.to_dict())]
    stored = [
        str(row)
        for table in ("plait_runs", "plait_steps", "plait_events")
        for row in run_sql(db_url, f"SELECT * FROM {table}")
    ]
    assert [text for text in shown + stored if token in text] == []


def test_a_secret_in_an_invalid_step_input_stays_out_of_errors(engine: plait.Engine, db_url: str) -> None:
    token = "sk-live-never-store-me-8842"

    @plait.step
    def login(creds: Credentials) -> str:
        return creds.user

    # The input is typed Any, so it is stored as given; only the error must not repeat it.
    run = engine.start(
        plait.workflow("leaky_input", input=ANY_JSON).then(login).commit(), {"api_key": token, "user": [1]}
    )
    error = run_failure(run)
    assert error["code"] == "input.invalid" and "user" in error["message"]
    errors = run_sql(db_url, "SELECT error FROM plait_runs UNION ALL SELECT error FROM plait_steps")
    failures = [e.model_dump_json() for e in run.events() if e.type in ("step.failed", "run.failed")]
    assert [text for text in [*map(str, errors), *failures, repr(error)] if token in text] == []


# -- an internal error fails the run after a few attempts instead of looping ---------


def test_a_persistent_internal_error_fails_the_run_after_a_few_attempts(db_url: str) -> None:
    clock = FakeClock()
    flow = plait.workflow("corrupted", input=int).then(echo).commit()
    with plait.Engine(db_url, clock=clock) as engine:
        run = engine.start(flow, 1, delay=timedelta(seconds=1))
        # A stored input no version of the workflow can read: plait's fault, not a step's.
        run_sql(db_url, "UPDATE plait_runs SET input = ? WHERE id = ?", ('"not a number"', run.id))
        for _ in range(MAX_INTERNAL_ERRORS):
            clock.advance(seconds=10)
            engine.run_until_idle()
        info = run.info()
        assert info.status == plait.RunStatus.FAILED
        assert info.error is not None and info.error["code"] == "internal.error"
        assert "ValidationError" in info.error["traceback"]
        internal = [s for s in run.steps() if s.step_id == INTERNAL_STEP]
        assert [s.attempt for s in internal] == list(range(1, MAX_INTERNAL_ERRORS + 1))
        error = run_failure(run)
        assert error["code"] == "internal.error"


# -- Python API errors are coded ---------------------------------------------------


@pytest.mark.parametrize("cursor", ["abc", "\xb2", "9" * 5000, "1:2:3", "-1", "99999999999999999999"])
def test_a_malformed_event_cursor_is_an_input_error(engine: plait.Engine, cursor: str) -> None:
    with pytest.raises(plait.InputValidationError):
        engine.events(after=cursor)
    with pytest.raises(plait.InputValidationError):
        engine.subscribe(lambda event: None, after=cursor)


def test_a_result_timeout_is_a_coded_error_and_still_a_timeout_error(engine: plait.Engine) -> None:
    flow = plait.workflow("waits_forever", input=int).wait_for_event("never", schema=Reading).commit()
    run = engine.start(flow, 1)
    with pytest.raises(plait.ResultTimeout) as caught:
        run.result(timeout=0.05)
    assert isinstance(caught.value, TimeoutError) and caught.value.code == "run.result_timeout"
    assert caught.value.run_id == run.id
    with pytest.raises(TimeoutError):
        run.result(timeout=0.05)
