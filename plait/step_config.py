"""Step configuration: settings a run gives each step, declared as a Pydantic model per step.

``@plait.step(config=Summarize)`` declares the model; ``engine.start(flow,
input, config={"summarize": {"max_length": 100}})`` gives values per step
id. They are validated before the run exists and stored with it as JSON
(only the fields given), so ``ctx.config`` is the same model, with its
defaults for the rest, on every worker and after every restart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, SecretBytes, SecretStr, ValidationError

from plait.errors import InputValidationError, RunStateError
from plait.payloads import validation_summary

if TYPE_CHECKING:
    from plait.workflow.graph import Workflow


class AIConfig(BaseModel):
    """Settings of a step that calls a language model; subclass it to add your own or change defaults.

    ``class Summarize(plait.AIConfig): max_length: int = 200`` then
    ``@plait.step(config=Summarize)``.
    """

    model: str = "gpt-4o-mini"
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, gt=0)


def config_models(workflow: Workflow[Any, Any]) -> dict[str, type[BaseModel]]:
    """Step id -> config model, for the steps of ``workflow`` that declare one."""
    found: dict[str, type[BaseModel]] = {}
    for task in workflow.iter_steps():
        model = getattr(task, "config_type", None)
        if model is not None:
            found[task.id] = model
    return found


def _validated(workflow: Workflow[Any, Any], config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    if not isinstance(config, Mapping):
        raise InputValidationError(
            f"config must map step ids to their settings, e.g. {{'summarize': {{'max_length': 100}}}}; "
            f"got {type(config).__name__}"
        )
    models = config_models(workflow)
    stored: dict[str, dict[str, Any]] = {}
    for step_id, values in config.items():
        model = models.get(step_id) if isinstance(step_id, str) else None
        if model is None:
            takes = ", ".join(sorted(models)) or "none"
            has_step = isinstance(step_id, str) and workflow.find_step(step_id) is not None
            why = "declares no config (use @plait.step(config=Model))" if has_step else "is not a step of it"
            raise InputValidationError(
                f"config for step {str(step_id)[:80]!r} of workflow '{workflow.id}': that step {why}; "
                f"steps that take config: {takes}"
            )
        try:
            instance = model.model_validate(values)
        except ValidationError as exc:
            errors = json.loads(exc.json(include_url=False))
            for error in errors:
                error["loc"] = ["config", step_id, *error.get("loc", [])]
            raise InputValidationError(
                f"config for step '{step_id}' of workflow '{workflow.id}' is invalid: {validation_summary(exc)}",
                errors=errors,
            ) from exc
        given = instance.model_fields_set
        secret = next((n for n in given if isinstance(getattr(instance, n), SecretStr | SecretBytes)), None)
        if secret is not None:
            raise InputValidationError(
                f"config for step '{step_id}': field '{secret}' is a secret, and config is stored with the run; "
                "read secrets from the environment inside the step instead"
            )
        stored[step_id] = instance.model_dump(mode="json", exclude_unset=True)
    return stored


def config_json(workflow: Workflow[Any, Any], config: Mapping[str, Any] | None) -> str | None:
    """The config to store with a new run (None when none is given); raises InputValidationError naming the step."""
    if config is None:
        return None
    stored = _validated(workflow, config)
    return json.dumps(stored, separators=(",", ":")) if stored else None


def merged_config_json(
    workflow: Workflow[Any, Any], original: str | None, overrides: Mapping[str, Any] | None
) -> str | None:
    """A rerun's config: ``overrides`` merged field by field over the source run's, validated again."""
    base: dict[str, dict[str, Any]] = json.loads(original) if original else {}
    if overrides is None:
        return original
    if not isinstance(overrides, Mapping):
        return config_json(workflow, overrides)  # raises with the same message as start()
    merged = {step: dict(values) for step, values in base.items()}
    for step_id, values in overrides.items():
        if not isinstance(values, Mapping):
            merged[step_id] = values
        else:
            merged[step_id] = {**merged.get(step_id, {}), **values}
    return config_json(workflow, merged)


class StepConfigs:
    """The config of each step of one run, validated on first use and cached."""

    def __init__(self, workflow: Workflow[Any, Any], stored: str | None) -> None:
        self._workflow = workflow
        self._stored = stored
        self._values: dict[str, dict[str, Any]] | None = None
        self._instances: dict[str, BaseModel] = {}

    def for_step(self, step_id: str) -> Any:
        instance = self._instances.get(step_id)
        if instance is not None:
            return instance
        task = self._workflow.find_step(step_id)
        model: type[BaseModel] | None = getattr(task, "config_type", None)
        if model is None:
            raise RunStateError(
                f"step '{step_id}' of workflow '{self._workflow.id}' declares no config: "
                "declare its settings with @plait.step(config=Model) to read ctx.config"
            )
        if self._values is None:
            self._values = json.loads(self._stored) if self._stored else {}
        instance = model.model_validate(self._values.get(step_id, {}))
        self._instances[step_id] = instance
        return instance
