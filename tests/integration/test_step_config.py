"""Step configuration: declared per step, given per run, validated first, stored, shown and rerun with changes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field, SecretStr

import plait
from tests.conftest import run_sql


class Summarize(plait.AIConfig):
    max_length: int = Field(default=50, gt=0)


class Tone(BaseModel):
    tone: str = "neutral"
    api_key: SecretStr | None = None


@plait.step(config=Summarize)
def summarize(ctx: plait.Context, text: str) -> dict[str, Any]:
    settings: Summarize = ctx.config
    return {"text": text[: settings.max_length], "model": settings.model, "temperature": settings.temperature}


@plait.step
def publish(ctx: plait.Context, summary: dict[str, Any]) -> str:
    return f"{summary['text']}|{summary['model']}|{summary['temperature']}"


def _word(ctx: plait.Context, text: str) -> str:
    return f"{ctx.config.tone}:{text}"


tone = plait.create_step(id="tone", input=str, output=str, execute=_word, config=Tone)
flow = plait.workflow("summarize_flow", input=str).then(summarize).then(publish).commit()
toned = plait.workflow("toned", input=str).then(tone).commit()


def count_runs(db_url: str) -> int:
    return int(run_sql(db_url, "SELECT count(*) FROM plait_runs")[0][0])


def test_ctx_config_has_the_defaults_when_nothing_is_given(engine: plait.Engine) -> None:
    run = engine.start(flow, "a" * 80)
    assert run.result(timeout=20) == f"{'a' * 50}|gpt-4o-mini|0.7"
    assert run.info().config is None


def test_config_given_at_start_reaches_the_step_and_is_stored_with_the_run(engine: plait.Engine) -> None:
    run = engine.start(flow, "a" * 80, config={"summarize": {"max_length": 10, "model": "small"}})
    assert run.result(timeout=20) == f"{'a' * 10}|small|0.7"
    assert run.info().config == {"summarize": {"max_length": 10, "model": "small"}}


def test_create_step_takes_config_too(engine: plait.Engine) -> None:
    assert engine.start(toned, "hi", config={"tone": {"tone": "warm"}}).result(timeout=20) == "warm:hi"
    assert engine.start(toned, "hi").result(timeout=20) == "neutral:hi"


@pytest.mark.parametrize(
    ("config", "names"),
    [
        ({"summarize": {"max_length": "long"}}, ["summarize", "max_length"]),
        ({"summarize": {"max_length": -1}}, ["summarize", "max_length"]),
        ({"summarize": {"temperature": 9}}, ["summarize", "temperature"]),
        ({"nope": {}}, ["nope", "not a step"]),
        ({"publish": {"x": 1}}, ["publish", "declares no config"]),
        ({"summarize": "fast"}, ["summarize"]),
        (["summarize"], ["config must map"]),
    ],
)
def test_bad_config_is_refused_before_any_run_exists(
    engine: plait.Engine, db_url: str, config: Any, names: list[str]
) -> None:
    with pytest.raises(plait.InputValidationError) as caught:
        engine.start(flow, "text", config=config)
    for name in names:
        assert name in caught.value.message
    assert count_runs(db_url) == 0


def test_the_field_path_is_in_the_error_details(engine: plait.Engine) -> None:
    with pytest.raises(plait.InputValidationError) as caught:
        engine.start(flow, "text", config={"summarize": {"max_length": "long"}})
    assert caught.value.errors[0]["loc"] == ["config", "summarize", "max_length"]


def test_a_secret_in_config_is_refused_and_never_stored(engine: plait.Engine, db_url: str) -> None:
    with pytest.raises(plait.InputValidationError, match="secret"):
        engine.start(toned, "hi", config={"tone": {"api_key": "sk-live-123"}})
    assert count_runs(db_url) == 0


def test_rerun_from_merges_new_settings_over_the_original(engine: plait.Engine) -> None:
    first = engine.start(flow, "a" * 80, config={"summarize": {"max_length": 10, "model": "small"}})
    first.result(timeout=20)
    again = engine.rerun_from(first.id, "summarize", config={"summarize": {"temperature": 0.1}})
    assert again.result(timeout=20) == f"{'a' * 10}|small|0.1"
    assert again.info().config == {"summarize": {"max_length": 10, "model": "small", "temperature": 0.1}}
    same = engine.rerun_from(first.id, "summarize")
    assert same.result(timeout=20) == f"{'a' * 10}|small|0.7"


def test_rerun_from_with_bad_config_creates_nothing(engine: plait.Engine, db_url: str) -> None:
    first = engine.start(flow, "abc")
    first.result(timeout=20)
    with pytest.raises(plait.InputValidationError, match="max_length"):
        engine.rerun_from(first.id, "summarize", config={"summarize": {"max_length": 0}})
    assert count_runs(db_url) == 1


def test_config_survives_a_restart_of_the_engine(db_url: str) -> None:
    with plait.Engine(db_url, worker=False) as client:
        run_id = client.start(flow, "a" * 80, config={"summarize": {"max_length": 5}}).id
    with plait.Engine(db_url) as worker:
        worker.register(flow)
        assert worker.get_run(run_id).result(timeout=20) == "aaaaa|gpt-4o-mini|0.7"


def test_a_step_without_config_reading_ctx_config_fails_with_a_clear_error(engine: plait.Engine) -> None:
    @plait.step
    def reads(ctx: plait.Context, x: int) -> int:
        return int(ctx.config.anything)

    run = engine.start(plait.workflow("reads_config", input=int).then(reads).commit(), 1)
    with pytest.raises(plait.RunFailed, match="declares no config"):
        run.result(timeout=20)


def test_config_must_be_a_model_class() -> None:
    with pytest.raises(plait.WorkflowDefinitionError, match="Pydantic model"):

        @plait.step(config=dict)  # type: ignore[arg-type]
        def bad(x: int) -> int:
            return x


def test_plait_runs_show_prints_the_config(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'show.db'}"
    with plait.Engine(url) as engine:
        run = engine.start(flow, "abc", config={"summarize": {"max_length": 2}})
        run.result(timeout=20)
    exe = shutil.which("plait")
    assert exe is not None
    shown = subprocess.run([exe, "runs", "show", run.id, "--db", url], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert 'config: {"summarize": {"max_length": 2}}' in shown.stdout
    as_json = subprocess.run(
        [exe, "runs", "show", run.id, "--db", url, "--json"], capture_output=True, text=True, timeout=60
    )
    assert json.loads(as_json.stdout)["run"]["config"] == {"summarize": {"max_length": 2}}
