"""Every public name in DESIGN.md exists, with the documented parameters, as a new user would call it.

One row per name (or per group of parameters). Rows are tagged with the issue that brought them: issue 12
(step config, specs, artifacts, stored completion triggers, schedule windows, extra hooks, webhook
options) and issue 16 (recipes and the planner).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

import plait
import plait.errors
from plait.cli import app as cli_app
from plait.http import create_app
from tests.document_kit import lead_document, registry

ISSUE_12 = "issue 12"  # config, specs, artifacts, stored on_complete, schedule windows, hooks, webhook options
ISSUE_16 = "issue 16"  # recipes and the planner


def row(*values: Any, issue: str | None = None) -> Any:
    """One checked name; ``issue`` says which issue brought it (every one has landed, so none may fail)."""
    return pytest.param(*values, id=str(values[0]) + ("" if not issue else f" ({issue})"))


def resolve(path: str) -> Any:
    """``"Engine.start"`` -> ``plait.Engine.start``; ``"plait.http.create_app"`` -> that function."""
    if path.startswith("plait."):
        module_name, _, attr = path.rpartition(".")
        module = __import__(module_name, fromlist=[attr])
        return getattr(module, attr)
    target: Any = plait
    for part in path.split("."):
        target = getattr(target, part)
    return target


def parameter_names(target: Any) -> set[str]:
    return set(inspect.signature(target).parameters)


def field_names(cls: Any) -> set[str]:
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return set(cls.model_fields)
    if dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls)}
    return parameter_names(cls)


# -- callables and their parameters ---------------------------------------------------------------

_START = ["workflow", "input", "run_id", "idempotency_key", "priority", "delay", "metadata", "budget"]

SIGNATURES = [
    # engine
    row("Engine.__init__", ["url", "namespace", "clock", "worker", "secrets", "document_env", "store_prompts"]),
    row("Engine.__init__", ["schema"]),
    row("Engine.__init__", ["blobs"], issue=ISSUE_12),
    row("Engine.register", ["items"]),
    row("Engine.start", _START),
    row("Engine.astart", _START),
    row("Engine.start", ["config"], issue=ISSUE_12),
    row("Engine.astart", ["config"], issue=ISSUE_12),
    row("Engine.get_run", ["run_id"]),
    row("Engine.list_runs", ["workflow", "status", "parent", "order", "limit", "cursor"]),
    row("Engine.count_runs", ["status", "workflow"]),
    row("Engine.execute", ["run_id", "budget"]),
    row("Engine.cancel", ["run_id", "reason"]),
    row("Engine.send_event", ["run_id", "name", "payload"]),
    row("Engine.retry", ["run_id"]),
    row("Engine.rerun_from", ["run_id", "step_id"]),
    row("Engine.rerun_from", ["config"], issue=ISSUE_12),
    row("Engine.on_complete", []),
    row("Engine.schedule", ["workflow", "cron", "timezone", "input"]),
    row("Engine.schedule", ["start_at", "until"], issue=ISSUE_12),
    row("Engine.add_webhook", ["url", "secret"]),
    row("Engine.add_webhook", ["headers", "timeout"], issue=ISSUE_12),
    row("Engine.pause_webhook", [], issue=ISSUE_12),
    row("Engine.resume_webhook", [], issue=ISSUE_12),
    row("Engine.subscribe", []),
    row("Engine.work", []),
    row("Engine.tick", ["max_items", "budget"]),
    row("Engine.prune", []),
    row("Engine.close", []),
    row("Engine.usage", ["workflow", "since", "until", "group_by"]),
    row("Engine.raise_budget", ["run_id", "max_cost", "max_tokens"]),
    row("Engine.save_document", ["document"]),
    row("Engine.document", ["version"]),
    row("Engine.document_versions", []),
    row("Engine.patch_document", ["ops", "actor", "expected_version"]),
    row("Hooks", ["on_run_created", "on_run_cancelled", "on_hook_error"], issue=ISSUE_12),
    # run handle
    row("RunHandle.result", ["timeout"]),
    row("RunHandle.aresult", ["timeout"]),
    row("RunHandle.steps", []),
    row("RunHandle.events", []),
    row("RunHandle.info", []),
    row("RunHandle.cancel", ["reason"]),
    row("RunHandle.send_event", ["name", "payload"]),
    row("RunHandle.resume", ["step_id", "payload"]),
    row("RunHandle.artifacts", [], issue=ISSUE_12),
    row("RunHandle.artifact", ["key"], issue=ISSUE_12),
    # step context
    row("Context.result_of", ["step"]),
    row("Context.result_or_none", ["step"]),
    row("Context.set_state", []),
    row("Context.progress", ["fraction", "message"]),
    row("Context.emit", ["type", "payload"]),
    row("Context.start_child", ["workflow", "input", "key"]),
    row(
        "Context.record_usage",
        [
            "model",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "provider",
            "cost",
            "prompt",
            "response",
        ],
    ),
    # steps and the builder
    row("step", ["id", "description", "retry", "timeout", "on_error", "queue", "skip_if"]),
    row("step", ["config"], issue=ISSUE_12),
    row("create_step", ["id", "input", "output", "execute"]),
    row("Retry", ["max_attempts", "initial", "backoff", "max_delay", "jitter", "retry_on"]),
    row("workflow", ["id", "input", "output", "version", "timeout", "on_error", "budget"]),
    row("Builder.then", ["step"]),
    row("Builder.parallel", ["steps"]),
    row("Builder.branch", ["cases", "default"]),
    row("Builder.map", ["fn"]),
    row("Builder.foreach", ["step", "concurrency"]),
    row("Builder.dowhile", ["step", "predicate"]),
    row("Builder.dountil", ["step", "predicate"]),
    row("Builder.sleep", []),
    row("Builder.sleep_until", []),
    row("Builder.wait_for_event", ["name", "schema", "timeout"]),
    row("Builder.commit", []),
    row("Workflow.to_json", []),
    row("Workflow.to_mermaid", []),
    row("spec", ["id", "input", "output", "version"], issue=ISSUE_12),
    # documents
    row("connector", ["type", "description"]),
    row("Registry.compile", ["document"]),
    row("Registry.describe", []),
    row("Registry.llm_tools", ["format"]),
    row("apply_ops", ["document", "ops", "registry", "actor", "expected_version"]),
    row("document", ["id", "input"]),
    # http, testing
    row("plait.http.create_app", ["engine"]),
    row("plait.testing.FakeClock", []),
    # recipes and the planner
    row("Planner.select", ["workflow", "input", "hints"], issue=ISSUE_16),
    row("Planner.plan", ["workflow", "input", "hints", "constraints"], issue=ISSUE_16),
    row("Plan.validate", [], issue=ISSUE_16),
    row("Plan.estimate", [], issue=ISSUE_16),
    row("Recipes.add", [], issue=ISSUE_16),
    row("Recipes.for_workflow", [], issue=ISSUE_16),
    row("Recipes.variant", [], issue=ISSUE_16),
    row("Recipes.default", [], issue=ISSUE_16),
    row("Recipes.variants", [], issue=ISSUE_16),
    row("Recipes.query", ["tags"], issue=ISSUE_16),
]


@pytest.mark.parametrize(("path", "params"), SIGNATURES)
def test_callable_has_the_documented_parameters(path: str, params: list[str]) -> None:
    target = resolve(path)
    assert callable(target), path
    missing = set(params) - parameter_names(target)
    assert not missing, f"{path} lacks parameters {sorted(missing)}"


# -- data types and their fields ------------------------------------------------------------------

FIELDS = [
    row("StepRecord", ["step_id", "status", "attempt", "input", "output", "error", "started_at", "finished_at"]),
    row("StepRecord", ["usage"]),
    row("Run", ["id", "status", "usage"]),
    row("Page", ["items", "next_cursor"]),
    row("Usage", ["input_tokens", "output_tokens", "cost", "calls", "by_model"]),
    row("UsageRow", ["input_tokens", "output_tokens", "cost", "calls"]),
    row("Budget", ["max_cost", "max_tokens", "on_exceed"]),
    row("WorkflowDocument", ["id", "description", "input", "vars", "blocks", "output"]),
    row("plait.documents.model.Block", ["id", "type", "params", "after", "when", "disabled"]),
    row("plait.documents.model.Condition", ["ref", "op", "value"]),
    row("PatchResult", ["document", "applied", "skipped", "summary"]),
    row("SkippedOp", ["index", "op", "code", "reason", "hint"]),
    row("AIConfig", ["model", "temperature", "max_tokens"], issue=ISSUE_12),
    row("Recipe", ["id", "workflow", "variant", "body", "conditions", "priority", "tags", "defaults"], issue=ISSUE_16),
    row("Condition", ["field", "op", "value"], issue=ISSUE_16),
    row("Selection", ["recipe", "reason", "matched"], issue=ISSUE_16),
    row("PlanHints", ["prefer_variant", "skip_steps"], issue=ISSUE_16),
    row("Recipes", [], issue=ISSUE_16),
    row("Planner", [], issue=ISSUE_16),
    row("Plan", [], issue=ISSUE_16),
]


@pytest.mark.parametrize(("path", "fields"), FIELDS)
def test_type_has_the_documented_fields(path: str, fields: list[str]) -> None:
    missing = set(fields) - field_names(resolve(path))
    assert not missing, f"{path} lacks fields {sorted(missing)}"


def test_hidden_and_user_only_mark_params() -> None:
    assert plait.Hidden("SLACK_TOKEN") is not None
    assert plait.UserOnly() is not None
    assert issubclass(plait.Connector, plait.Step)  # a connector is usable in the builder


def test_run_statuses() -> None:
    assert [s.value for s in plait.RunStatus] == [
        "pending",
        "running",
        "waiting",
        "suspended",
        "succeeded",
        "failed",
        "cancelled",
    ]


# -- errors ---------------------------------------------------------------------------------------

ERRORS = [
    ("WorkflowDefinitionError", "workflow.invalid"),
    ("WorkflowNotFound", "workflow.not_found"),
    ("RunNotFound", "run.not_found"),
    ("InputValidationError", "input.invalid"),
    ("StepTimeout", "step.timeout"),
    ("EventTimeout", "event.timeout"),
    ("RunFailed", "run.failed"),
    ("RunCancelled", "run.cancelled"),
    ("DuplicateWorkflow", "workflow.duplicate"),
    ("StoreUnavailable", "store.unavailable"),
    ("LeaseLost", "lease.lost"),
    ("WorkflowTimeout", "run.timeout"),  # code named in DESIGN
    ("BudgetExceeded", "run.budget_exceeded"),  # code named in DESIGN
    ("DocumentInvalid", "document.invalid"),
]


@pytest.mark.parametrize(("name", "code"), ERRORS, ids=[name for name, _ in ERRORS])
def test_error_class_and_stable_code(name: str, code: str) -> None:
    cls = getattr(plait, name)
    assert issubclass(cls, plait.PlaitError)
    assert cls.code == code


# -- document vocabulary --------------------------------------------------------------------------

OP_NAMES = ["add_block", "update_block", "remove_block", "rename_block", "connect", "disconnect"]
OP_NAMES += ["set_input", "set_var", "set_output"]
CONDITION_OPS = ["eq", "neq", "gt", "gte", "lt", "lte", "contains", "matches", "exists", "not_exists"]
BUILTIN_BLOCKS = ["wait.duration", "wait.event", "wait.approval"]


def test_catalog_names_every_op_condition_operator_and_builtin_block() -> None:
    catalog = registry().describe()
    text = repr(catalog)
    assert {"slack.send", "crm.enrich"} <= {c["type"] for c in catalog["connectors"]}
    for name in OP_NAMES + CONDITION_OPS + BUILTIN_BLOCKS:
        assert f"'{name}'" in text, name
    for fmt in ("openai", "anthropic"):
        assert "apply_ops" in repr(registry().llm_tools(format=fmt))


SKIP_CODES = [
    ({"id": "x"}, "malformed_op"),
    ({"op": "add_block", "id": "x", "type": "nope.nope"}, "unknown_type"),
    ({"op": "add_block", "id": "enrich", "type": "math.count", "params": {"count": 1}}, "duplicate_id"),
    ({"op": "add_block", "id": "bad id", "type": "math.count"}, "invalid_id"),
    ({"op": "update_block", "id": "ghost", "params": {}}, "block_not_found"),
    ({"op": "add_block", "id": "x", "type": "math.count", "params": {"count": -1}}, "invalid_params"),
    (
        {"op": "add_block", "id": "x", "type": "slack.send", "params": {"channel": "c", "text": "t", "token": "s"}},
        "hidden_param",
    ),
    ({"op": "update_block", "id": "notify", "params": {"workspace": "other"}}, "user_only_param"),
    ({"op": "add_block", "id": "x", "type": "math.count", "params": {"count": "{{ghost.total}}"}}, "unknown_reference"),
    ({"op": "update_block", "id": "enrich", "params": {"email": "{{notify.text}}"}}, "reference_not_upstream"),
    ({"op": "add_block", "id": "x", "type": "math.count", "params": {"count": "{{enrich.scor}}"}}, "unknown_field"),
    ({"op": "connect", "from": "notify", "to": "enrich"}, "cycle"),
    ({"op": "remove_block", "id": "enrich"}, "block_referenced"),
    ({"op": "set_var", "name": "big", "value": "x" * 2_000_000}, "too_large"),
]


@pytest.mark.parametrize(("op", "code"), SKIP_CODES, ids=[code for _, code in SKIP_CODES])
def test_skip_code(op: dict[str, Any], code: str) -> None:
    result = plait.apply_ops(lead_document(), [op], registry(), actor="llm")
    assert [(s.index, s.code) for s in result.skipped] == [(0, code)], result.summary


def test_skip_code_version_conflict() -> None:
    op = {"op": "set_var", "name": "a", "value": 1}
    result = plait.apply_ops(lead_document(), [op], registry(), expected_version="0")
    assert [s.code for s in result.skipped] == ["version_conflict"]


# -- members seen from a real run -----------------------------------------------------------------


class Name(BaseModel):
    name: str


CONTEXT_MEMBERS = ["run_id", "step_id", "attempt", "workflow_input", "state", "log", "idempotency_key"]
CONTEXT_MEMBERS += ["cancelled", "metadata", "budget_left"]
SEEN: dict[str, bool] = {}


class Settings(BaseModel):
    tone: str = "plain"


@plait.step(config=Settings)
def look_around(ctx: plait.Context, value: Name) -> Name:
    for member in [*CONTEXT_MEMBERS, "config", "artifacts"]:
        try:
            getattr(ctx, member)
            SEEN[member] = True
        except AttributeError:
            SEEN[member] = False
    ctx.log.info("looked", members=len(SEEN))
    return value


looking = plait.workflow("contract-look", input=Name).then(look_around).commit()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    url = f"sqlite:///{tmp_path_factory.mktemp('contract') / 'plait.db'}"
    with plait.Engine(url) as engine:
        engine.register(looking)
        run = engine.start(looking, {"name": "ada"}, metadata={"who": "contract"})
        assert run.result(timeout=60) == Name(name="ada")
        yield run


@pytest.mark.parametrize(
    "member",
    [*CONTEXT_MEMBERS, row("config", issue=ISSUE_12), row("artifacts", issue=ISSUE_12)],
)
def test_context_member_exists_in_a_step(finished_run: Any, member: str) -> None:
    assert SEEN.get(member), f"ctx.{member} is missing"


def test_run_handle_members(finished_run: plait.RunHandle[Any]) -> None:
    assert isinstance(finished_run.id, str)
    assert finished_run.status == plait.RunStatus.SUCCEEDED
    assert isinstance(finished_run.info().usage, plait.Usage)
    assert [s.step_id for s in finished_run.steps()] == ["look_around"]


class Answer(BaseModel):
    answer: str


@plait.step(resume_schema=Answer)
def ask(ctx: plait.Context, value: Name) -> str:
    if ctx.resume_data is None:
        ctx.suspend({"question": f"what about {value.name}?"})
    return f"{value.name}: {ctx.resume_data.answer}"


asking = plait.workflow("contract-ask", input=Name).then(ask).commit()


def test_run_resume_takes_step_id_and_payload(tmp_path: Path) -> None:
    with plait.Engine(f"sqlite:///{tmp_path / 'plait.db'}") as engine:
        engine.register(asking)
        run = engine.start(asking, {"name": "ada"})
        engine.run_until_idle()
        assert run.status == plait.RunStatus.SUSPENDED
        run.resume(step_id="ask", payload={"answer": "yes"})
        assert run.result(timeout=60) == "ada: yes"


def test_engine_url_defaults_to_the_environment_then_plait_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PLAIT_DATABASE_URL", f"sqlite:///{tmp_path / 'from-env.db'}")
    with plait.Engine(worker=False) as engine:
        engine.count_runs()
    assert (tmp_path / "from-env.db").exists() and not (tmp_path / "plait.db").exists()
    monkeypatch.delenv("PLAIT_DATABASE_URL")
    with plait.Engine(worker=False) as engine:
        engine.count_runs()
    assert (tmp_path / "plait.db").exists()


def test_every_public_coroutine_has_a_sync_twin() -> None:
    for cls in (plait.Engine, plait.RunHandle):
        for name, member in vars(cls).items():
            if name.startswith("a") and inspect.iscoroutinefunction(member):
                assert hasattr(cls, name[1:]), f"{cls.__name__}.{name} has no sync twin"


# -- HTTP routes ----------------------------------------------------------------------------------

ROUTES = [
    row("GET /api/workflows"),
    row("GET /api/runs"),
    row("GET /api/runs/{run_id}"),
    row("GET /api/runs/{run_id}/events"),
    row("POST /api/runs/{run_id}/events"),
    row("GET /api/usage"),
    row("GET /api/schedules"),
    row("POST /api/schedules/{schedule_id}/pause"),
    row("POST /api/schedules/{schedule_id}/resume"),
    row("POST /api/schedules/{schedule_id}/trigger"),
    row("GET /api/connectors"),
    row("GET /api/documents/{document_id}"),
    row("PUT /api/documents/{document_id}"),
    row("GET /api/documents/{document_id}/versions"),
    row("POST /api/documents/{document_id}/ops"),
    row("POST /api/documents/{document_id}/runs"),
    row("GET /api/runs/{run_id}/artifacts", issue=ISSUE_12),
    row("GET /api/runs/{run_id}/artifacts/{key}", issue=ISSUE_12),
    row("GET /"),
]


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('routes') / 'plait.db'}"
    with plait.Engine(url, worker=False) as engine:
        app = create_app(engine)
        found = {f"{method.upper()} {path}" for path, ops in app.openapi()["paths"].items() for method in ops}
        found |= {f"{m} {r.path}" for r in app.routes if hasattr(r, "path") for m in getattr(r, "methods", None) or ()}
        return found


@pytest.mark.parametrize("route", ROUTES)
def test_http_route_exists(routes: set[str], route: str) -> None:
    method, path = route.split(" ")
    # DESIGN writes {id}; the app names the parameter after what it identifies.
    shape = f"{method} {re.sub(r'{[^}]+}', '{}', path)}"
    assert route in routes or any(re.sub(r"{[^}]+}", "{}", found) == shape for found in routes)


# -- CLI commands ---------------------------------------------------------------------------------

COMMANDS = ["demo", "server", "worker", "run", "runs list", "runs show", "runs cancel", "runs retry", "runs rerun"]
COMMANDS += ["events", "workflows list", "workflows graph", "schedules", "db upgrade", "db prune", "usage"]
COMMANDS += ["documents list", "documents show", "documents apply", "documents run"]


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_command_exists(command: str) -> None:
    result = CliRunner().invoke(cli_app, [*command.split(), "--help"], env={**os.environ, "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_cli_options_named_in_design() -> None:
    runner = CliRunner()
    env = {**os.environ, "COLUMNS": "200"}
    assert "--follow" in runner.invoke(cli_app, ["events", "--help"], env=env).output
    run_help = runner.invoke(cli_app, ["run", "--help"], env=env).output
    assert "--input" in run_help and "--wait" in run_help
    usage_help = runner.invoke(cli_app, ["usage", "--help"], env=env).output
    assert "--since" in usage_help and "--by" in usage_help
