"""Documents run by the engine on SQLite and PostgreSQL: durable, parallel, retried, cancellable; secrets hidden."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

import plait
from plait.testing import FakeClock
from tests.conftest import run_sql
from tests.document_kit import CALLS, SECRET, SlackParams, count, enrich, lead_document, slack

START = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def engine(db_url: str, clock: FakeClock) -> Iterator[plait.Engine]:
    CALLS.clear()
    with plait.Engine(db_url, clock=clock, poll_interval=0.05, secrets={"SLACK_TOKEN": SECRET}) as engine:
        engine.register(enrich, slack, count)
        yield engine


def doc(data: dict[str, Any]) -> plait.WorkflowDocument:
    return plait.WorkflowDocument.parse(data)


def test_a_document_runs_to_completion(engine: plait.Engine) -> None:
    engine.register(doc(lead_document()))
    run = engine.start("lead-notifier", {"email": "ada@acme.com"})
    assert run.result(timeout=30) == {"company": "Acme", "score": 80, "sent": "Lead Acme in Paris"}
    steps = {s.step_id: s.status for s in run.steps()}
    assert steps == {"enrich": "succeeded", "notify": "succeeded", "_output": "succeeded"}
    assert CALLS == [("enrich", "ada@acme.com"), ("slack", "Lead Acme in Paris")]


def test_input_is_validated_against_the_document_schema(engine: plait.Engine) -> None:
    engine.register(doc(lead_document()))
    with pytest.raises(plait.InputValidationError, match="email"):
        engine.start("lead-notifier", {"mail": "x"})


def test_when_and_disabled_skip_blocks_and_their_references_read_null(engine: plait.Engine) -> None:
    data = lead_document()
    data["blocks"][1]["when"] = {"ref": "{{enrich.score}}", "op": "gt", "value": 90}
    data["blocks"].append({"id": "tally", "type": "math.count", "params": {"count": 1}, "disabled": True})
    data["output"] = {"sent": "{{notify.text}}", "tally": "{{tally.total}}", "name": "{{enrich.name}}"}
    engine.register(doc(data))
    run = engine.start("lead-notifier", {"email": "ada@acme.com"})
    assert run.result(timeout=30) == {"sent": None, "tally": None, "name": "Acme"}
    statuses = {s.step_id: s.status for s in run.steps()}
    assert statuses["notify"] == "skipped" and statuses["tally"] == "skipped"
    assert [kind for kind, _ in CALLS] == ["enrich"]


class Gate:
    """Two blocks that can only both finish if they run at the same time."""

    barrier = threading.Barrier(2, timeout=20)


class GateParams(BaseModel):
    name: str


class Passed(BaseModel):
    name: str


@plait.connector(type="test.gate")
def gate(params: GateParams) -> Passed:
    Gate.barrier.wait()
    return Passed(name=params.name)


def test_independent_blocks_run_in_parallel(engine: plait.Engine) -> None:
    Gate.barrier.reset()
    engine.register(gate)
    data = {
        "id": "fan-out",
        "blocks": [
            {"id": "left", "type": "test.gate", "params": {"name": "l"}},
            {"id": "right", "type": "test.gate", "params": {"name": "r"}},
            {"id": "join", "type": "math.count", "params": {"count": 1, "label": "{{left.name}}{{right.name}}"}},
        ],
        "output": "{{join.total}}",
    }
    engine.register(doc(data))
    assert engine.start("fan-out", {}).result(timeout=30) == 2


class Flaky(BaseModel):
    failures: int


attempts: dict[str, int] = {}


@plait.connector(type="test.flaky", retry=plait.Retry(max_attempts=3, initial=0, jitter=0))
def flaky(ctx: plait.Context, params: SlackParams) -> Passed:
    attempts[ctx.run_id] = attempts.get(ctx.run_id, 0) + 1
    if attempts[ctx.run_id] < 3:
        raise ConnectionError(f"rejected token {params.token}")  # a careless message holding the secret
    return Passed(name=params.text)


def test_retries_and_secrets_never_reach_the_database_events_logs_or_errors(
    engine: plait.Engine, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    engine.register(flaky)
    data = lead_document()
    data["blocks"].append({"id": "retry", "type": "test.flaky", "params": {"channel": "#x", "text": "ok"}})
    data["output"] = {"sent": "{{notify.text}}", "retried": "{{retry.name}}"}
    engine.register(doc(data))
    engine.save_document(doc(data))
    run = engine.start("lead-notifier", {"email": "ada@acme.com"})
    assert run.result(timeout=30) == {"sent": "Lead Acme in Paris", "retried": "ok"}
    retry_rows = [s for s in run.steps() if s.step_id == "retry"]
    assert [s.status for s in retry_rows] == ["failed", "failed", "succeeded"]
    assert "[hidden]" in json.dumps(retry_rows[0].error)
    events = json.dumps([e.model_dump(mode="json") for e in engine.get_run(run.id).events(follow=False)])
    assert "step.retrying" in events
    dump = json.dumps(dump_tables(db_url), default=str)
    for text in (dump, events, caplog.text):
        assert SECRET not in text
    assert "Lead Acme in Paris" in dump  # the dump did read the data


def dump_tables(url: str) -> dict[str, list[tuple[Any, ...]]]:
    if url.startswith("sqlite"):
        names = [r[0] for r in run_sql(url, "SELECT name FROM sqlite_master WHERE type = 'table'")]
    else:
        names = [r[0] for r in run_sql(url, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
    assert "plait_documents" in names and "plait_steps" in names
    return {name: run_sql(url, f"SELECT * FROM {name}") for name in names}


def test_secrets_come_from_a_function_or_the_environment(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = doc(lead_document())
    asked: list[str] = []

    def source(name: str) -> str | None:
        asked.append(name)
        return SECRET

    with plait.Engine(db_url, secrets=source) as engine:
        engine.register(enrich, slack, data)
        assert engine.start("lead-notifier", {"email": "a@b.io"}).result(timeout=30)["sent"] == "Lead B in Paris"
    assert asked == ["SLACK_TOKEN"]
    monkeypatch.setenv("SLACK_TOKEN", SECRET)
    with plait.Engine(db_url) as engine:
        engine.register(enrich, slack, data)
        assert engine.start("lead-notifier", {"email": "a@b.io"}).result(timeout=30)["sent"] == "Lead B in Paris"
    monkeypatch.delenv("SLACK_TOKEN")
    with plait.Engine(db_url) as engine:
        engine.register(enrich, slack, data)
        with pytest.raises(plait.RunFailed) as failed:
            engine.start("lead-notifier", {"email": "a@b.io"}).result(timeout=30)
    assert "SLACK_TOKEN" in failed.value.message or "SLACK_TOKEN" in json.dumps(failed.value.error)


def test_env_templates_read_only_allowed_names(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_URL", "https://app.example")
    data = lead_document()
    data["blocks"][1]["params"]["text"] = "See {{env.APP_URL}}"
    with plait.Engine(db_url, secrets={"SLACK_TOKEN": SECRET}, document_env=["APP_URL"]) as engine:
        engine.register(enrich, slack, doc(data))
        assert (
            engine.start("lead-notifier", {"email": "a@b.io"}).result(timeout=30)["sent"] == "See https://app.example"
        )
    with plait.Engine(db_url, secrets={"SLACK_TOKEN": SECRET}) as engine:
        engine.register(enrich, slack)
        with pytest.raises(plait.DocumentInvalid, match=r"env\.APP_URL"):
            engine.register(doc(data))


def test_waits_are_durable_under_the_fake_clock(engine: plait.Engine, clock: FakeClock) -> None:
    data = {
        "id": "waiter",
        "input": {"type": "object", "properties": {"email": {"type": "string"}}},
        "blocks": [
            {"id": "first", "type": "math.count", "params": {"count": 1}},
            {"id": "nap", "type": "wait.duration", "params": {"seconds": 3 * 86400}, "after": ["first"]},
            {
                "id": "paid",
                "type": "wait.event",
                "params": {"name": "paid", "schema": {"type": "object", "properties": {"amount": {"type": "integer"}}}},
                "after": ["nap"],
            },
            {"id": "ok", "type": "wait.approval", "params": {"name": "manager"}, "after": ["paid"]},
            {"id": "last", "type": "math.count", "params": {"count": "{{paid.amount}}"}, "after": ["ok"]},
        ],
        "output": {"total": "{{last.total}}", "approved": "{{ok.approved}}", "payload": "{{paid}}"},
    }
    engine.register(doc(data))
    run = engine.start("waiter", {})
    engine.run_until_idle()
    assert run.info().status == plait.RunStatus.WAITING
    clock.advance(days=3)
    engine.run_until_idle()
    with pytest.raises(plait.InputValidationError):
        run.send_event("paid", {"amount": "lots"})
    # A template inside a payload is data: it is stored and handed on, never evaluated.
    run.send_event("paid", {"amount": 41, "note": "{{env.SLACK_TOKEN}}"})
    engine.run_until_idle()
    assert run.info().status == plait.RunStatus.WAITING
    run.approve("ok", None)
    assert run.result(timeout=30) == {
        "total": 42,
        "approved": True,
        "payload": {"amount": 41, "note": "{{env.SLACK_TOKEN}}"},
    }


def test_a_waiting_document_run_can_be_cancelled(engine: plait.Engine) -> None:
    data = {"id": "parked", "blocks": [{"id": "w", "type": "wait.event", "params": {"name": "never"}}]}
    engine.register(doc(data))
    run = engine.start("parked", {})
    engine.run_until_idle()
    assert engine.cancel(run.id)
    with pytest.raises(plait.RunCancelled):
        run.result(timeout=10)


def test_stored_versions_patches_and_pinned_runs(engine: plait.Engine) -> None:
    data = lead_document()
    data["blocks"].insert(1, {"id": "go", "type": "wait.event", "params": {"name": "go"}, "after": ["enrich"]})
    data["blocks"][2]["after"] = ["go"]
    assert engine.save_document(doc(data)) == 1
    first = engine.start("lead-notifier", {"email": "ada@acme.com"})
    engine.run_until_idle()
    result = engine.patch_document(
        "lead-notifier",
        [
            {"op": "update_block", "id": "notify", "params": {"text": "v2 {{enrich.name}}"}},
            {"op": "update_block", "id": "notify", "params": {"token": "sneaky"}},
        ],
        actor="llm",
        expected_version=1,
    )
    assert result.applied == [0] and [s.code for s in result.skipped] == ["hidden_param"]
    assert result.version == 2
    assert [v.version for v in engine.document_versions("lead-notifier")] == [1, 2]
    assert engine.document_versions("lead-notifier")[1].ops == [
        {"op": "update_block", "id": "notify", "params": {"text": "v2 {{enrich.name}}"}}
    ]
    assert engine.document("lead-notifier", 1).blocks[2].params["text"].startswith("Lead")
    second = engine.start("lead-notifier", {"email": "bob@acme.com"})
    engine.run_until_idle()
    assert first.info().workflow_version != second.info().workflow_version
    first.send_event("go", {})
    second.send_event("go", {})
    assert first.result(timeout=30)["sent"] == "Lead Acme in Paris"
    assert second.result(timeout=30)["sent"] == "v2 Acme"
    stale = engine.patch_document("lead-notifier", [{"op": "set_var", "name": "a", "value": 1}], expected_version=1)
    assert [s.code for s in stale.skipped] == ["version_conflict"] and stale.version == 2
    assert "sneaky" not in json.dumps([v.model_dump(mode="json") for v in engine.document_versions("lead-notifier")])
    assert [d.id for d in engine.documents()] == ["lead-notifier"]


def test_saving_an_invalid_document_stores_nothing(engine: plait.Engine) -> None:
    with pytest.raises(plait.DocumentInvalid):
        engine.save_document(doc(lead_document(output="{{ghost.x}}")))
    with pytest.raises(plait.WorkflowNotFound):
        engine.document("lead-notifier")


def test_concurrent_patches_of_one_version_one_wins(db_url: str) -> None:
    with (
        plait.Engine(db_url, worker=False) as one,
        plait.Engine(db_url, worker=False) as two,
    ):
        for engine in (one, two):
            engine.register(enrich, slack, count)
        one.save_document(doc(lead_document()))
        results: list[plait.PatchResult] = []
        start = threading.Barrier(2)

        def patch(engine: plait.Engine, name: str) -> None:
            start.wait()
            results.append(
                engine.patch_document(
                    "lead-notifier", [{"op": "set_var", "name": name, "value": 1}], expected_version=1
                )
            )

        threads = [threading.Thread(target=patch, args=(e, n)) for e, n in ((one, "a"), (two, "b"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        outcomes = sorted("applied" if r.applied else r.skipped[0].code for r in results)
        assert outcomes == ["applied", "version_conflict"]
        versions = one.document_versions("lead-notifier")
        assert [v.version for v in versions] == [1, 2]
        winner = next(r for r in results if r.applied)
        assert one.document("lead-notifier").vars == winner.document.vars


def test_a_worker_process_loads_stored_versions(db_url: str) -> None:
    with plait.Engine(db_url, worker=False, secrets={"SLACK_TOKEN": SECRET}) as client:
        client.register(enrich, slack)
        client.save_document(doc(lead_document()))
        run = client.start("lead-notifier", {"email": "ada@acme.com"})
    with plait.Engine(db_url, secrets={"SLACK_TOKEN": SECRET}) as worker:
        worker.register(enrich, slack)
        assert worker.load_documents() == 1
        assert worker.get_run(run.id).result(timeout=30)["company"] == "Acme"


def test_start_by_id_runs_the_latest_version_another_engine_stored(db_url: str) -> None:
    with (
        plait.Engine(db_url, secrets={"SLACK_TOKEN": SECRET}) as first,
        plait.Engine(db_url, worker=False) as second,
    ):
        first.register(enrich, slack)
        second.register(enrich, slack)
        first.save_document(doc(lead_document()))
        assert first.start("lead-notifier", {"email": "a@acme.com"}).result(timeout=30)["sent"] == "Lead Acme in Paris"
        second.patch_document("lead-notifier", [{"op": "update_block", "id": "notify", "params": {"text": "v2"}}])
        assert first.start("lead-notifier", {"email": "a@acme.com"}).result(timeout=30)["sent"] == "v2"


def test_a_hundred_block_chain_runs(engine: plait.Engine) -> None:
    blocks = [{"id": "b0", "type": "math.count", "params": {"count": 0}}]
    blocks += [
        {"id": f"b{i}", "type": "math.count", "params": {"count": f"{{{{b{i - 1}.total}}}}"}} for i in range(1, 100)
    ]
    engine.register(doc({"id": "chain", "blocks": blocks, "output": "{{b99.total}}"}))
    assert engine.start("chain", {}).result(timeout=60) == 100


def test_connectors_work_as_builder_steps_with_hidden_params(engine: plait.Engine) -> None:
    class Lead(BaseModel):
        email: str

    @plait.step
    def to_message(lead: Lead) -> SlackParams:
        # The hidden token is filled in by the connector at each attempt; the stored input never has it.
        return SlackParams.model_construct(channel="#b", text=lead.email)

    flow = plait.workflow("direct", input=Lead).then(to_message).then(slack).commit()
    run = engine.start(flow, {"email": "x@y.z"})
    assert run.result(timeout=30).text == "x@y.z"
    stored = next(s for s in run.steps() if s.step_id == "slack.send")
    assert "token" not in json.dumps(stored.input)
