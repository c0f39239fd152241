"""Connectors: typed, registered actions that documents use as blocks (and builders as steps).

A connector's params are a Pydantic model. A field ``Annotated[str,
plait.Hidden("SLACK_TOKEN")]`` is a secret: it is left out of the step's stored
input, the catalog and every document, and filled in when each attempt starts
from the engine's secrets. ``Annotated[..., plait.UserOnly()]`` fields may be set
by people but not by an LLM.
"""

from __future__ import annotations

import builtins
import functools
import inspect
import typing
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar, overload

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from plait.clock import to_seconds
from plait.documents.schemas import type_at
from plait.documents.secrets import read_secret, redact
from plait.errors import InputValidationError, WorkflowDefinitionError
from plait.payloads import Codec
from plait.queues import Queue, queue_name
from plait.steps import NO_RETRY, Duration, Retry, Step, StepOptions, call_user_function, takes_context

if TYPE_CHECKING:
    from plait.context import Context

P = TypeVar("P", bound=BaseModel)
O = TypeVar("O")  # noqa: E741 - reads as "output"
P_contra = TypeVar("P_contra", contravariant=True)
O_co = TypeVar("O_co", covariant=True)


@dataclass(frozen=True)
class Hidden:
    """Marks a connector param as a secret named ``name`` (default: the environment variable of that name).

    Never stored, logged, sent in events or shown to an LLM; filled in at each attempt.
    """

    name: str


@dataclass(frozen=True)
class UserOnly:
    """Marks a connector param that people may set (``actor="user"``) but an LLM may not."""


@dataclass(frozen=True)
class ParamField:
    """One param of a connector, as documents see it."""

    key: str
    required: bool
    adapter: TypeAdapter[Any]
    user_only: bool
    # The JSON types the param accepts (None when its schema does not say), for whole-value templates.
    json_types: frozenset[str] | None


@dataclass(frozen=True, eq=False)
class Connector(Step[P_contra, O_co]):
    """A registered action: a ``Step`` whose input is a params model, usable as a document block."""

    type: str = ""
    params_model: builtins.type[BaseModel] = BaseModel
    # (param key, secret name) for every hidden param.
    hidden: tuple[tuple[str, str], ...] = ()
    fields: Mapping[str, ParamField] = field(default_factory=dict)
    call: Callable[..., Any] | None = None
    call_takes_context: bool = False
    call_is_async: bool = False

    @property
    def hidden_keys(self) -> frozenset[str]:
        return frozenset(key for key, _ in self.hidden)

    @property
    def user_only_keys(self) -> frozenset[str]:
        return frozenset(key for key, f in self.fields.items() if f.user_only)

    def params_schema(self) -> dict[str, Any]:
        """JSON Schema of the params an LLM may see: no hidden field; user-only ones marked."""
        schema = self.input_codec.schema()
        for key in self.user_only_keys:
            prop = schema.get("properties", {}).get(key)
            if isinstance(prop, dict):
                prop["x-plait-user-only"] = True
        return schema

    @functools.cached_property
    def _output_schema(self) -> dict[str, Any]:
        return self.output_codec.schema()

    def output_schema(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """JSON Schema of the connector's output (what ``{{block.field}}`` may read)."""
        return self._output_schema

    def build_params(self, ctx: Context, values: Mapping[str, Any]) -> BaseModel:
        """The full params model: ``values`` plus every hidden param read from the engine's secrets.

        A validation error never carries a secret: inputs are left out and the
        messages are redacted.
        """
        data = dict(values)
        secrets: list[str] = []
        for key, name in self.hidden:
            value = read_secret(ctx, name)
            if value is None:
                if self.params_model.model_fields[key].is_required():
                    raise InputValidationError(
                        f"connector '{self.type}' needs the secret '{name}' and none is set: pass it in "
                        f"Engine(secrets={{'{name}': ...}}) or set the environment variable {name}"
                    )
                continue
            data[key] = value
            secrets.append(value)
        try:
            return self.params_model.model_validate(data)
        except ValidationError as exc:
            errors = [
                {"loc": list(err["loc"]), "msg": redact(err["msg"], secrets), "type": err["type"]}
                for err in exc.errors(include_url=False, include_input=False, include_context=False)
            ]
            fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in errors)
            raise InputValidationError(
                f"connector '{self.type}' rejected its params: {fields}", errors=errors
            ) from None

    async def invoke_connector(self, ctx: Context, values: Mapping[str, Any]) -> Any:
        """Fill hidden params, validate, and run the connector once; secrets never leak into its error."""
        params = self.build_params(ctx, values)
        secrets = [str(getattr(params, key)) for key, _ in self.hidden if getattr(params, key, None) is not None]
        assert self.call is not None
        try:
            return await call_user_function(self.call, self.call_takes_context, self.call_is_async, ctx, params)
        except Exception as exc:
            text = str(exc)
            if any(secret and secret in text for secret in secrets):
                # The original would carry the secret into the stored error and its traceback.
                raise ConnectorError(f"connector '{self.type}' failed: {redact(text, secrets)}") from None
            raise

    def __repr__(self) -> str:
        return f"Connector({self.type!r})"


class ConnectorError(Exception):
    """A connector failed with a message that held a secret; this copy has it redacted."""


def classify_params(model: type[BaseModel]) -> tuple[tuple[tuple[str, str], ...], dict[str, ParamField]]:
    hidden: list[tuple[str, str]] = []
    fields: dict[str, ParamField] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        marks = [m for m in info.metadata if isinstance(m, Hidden)]
        if marks:
            hidden.append((key, marks[0].name))
            continue
        user_only = any(isinstance(m, UserOnly) for m in info.metadata)
        # The constraints (min_length, ge, ...) are in metadata; the FieldInfo itself would bring its alias.
        annotated: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        adapter: TypeAdapter[Any] = TypeAdapter(annotated)
        try:
            accepted = type_at(adapter.json_schema(), ())
        except Exception:  # noqa: BLE001 - a type without a JSON schema accepts what its validator says.
            accepted = None
        types = None if accepted is None else frozenset(accepted)
        fields[key] = ParamField(key, info.is_required(), adapter, user_only, types)
    return tuple(hidden), fields


def _public_model(model: type[BaseModel], hidden: frozenset[str]) -> type[BaseModel]:
    """The params model without hidden fields: the step's stored input. Reads a full model's attributes."""
    kept: dict[str, Any] = {
        name: (info.annotation, info) for name, info in model.model_fields.items() if (info.alias or name) not in hidden
    }
    config = ConfigDict(extra="ignore", from_attributes=True, title=model.__name__)
    public: type[BaseModel] = create_model(f"{model.__name__}Public", __config__=config, **kept)
    return public


def make_connector(
    fn: Callable[..., Any],
    *,
    type: str,
    description: str = "",
    id: str | None = None,
    retry: Retry | None = None,
    timeout: Duration | None = None,
    queue: Queue | str | None = None,
) -> Connector[Any, Any]:
    """Build a connector from ``fn(params)`` or ``fn(ctx, params)`` (used by ``@plait.connector``)."""
    if not isinstance(type, str) or not type:
        raise WorkflowDefinitionError("@plait.connector needs type='service.action'")
    with_ctx = takes_context(fn)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise WorkflowDefinitionError(f"connector '{type}': cannot resolve its type annotations ({exc})") from exc
    params_name = list(inspect.signature(fn).parameters)[-1]
    params_model = hints.get(params_name)
    if not (inspect.isclass(params_model) and issubclass(params_model, BaseModel)):
        raise WorkflowDefinitionError(
            f"connector '{type}': its params must be annotated with a Pydantic model, got {params_model!r}"
        )
    output_type = hints.get("return", Any)
    if inspect.iscoroutinefunction(fn) and typing.get_origin(output_type) is Coroutine:
        output_type = typing.get_args(output_type)[-1]
    hidden, fields = classify_params(params_model)
    public = _public_model(params_model, frozenset(k for k, _ in hidden))
    step_id = id or type
    options = StepOptions(
        id=step_id,
        description=description or (inspect.getdoc(fn) or ""),
        retry=retry or NO_RETRY,
        timeout=None if timeout is None else to_seconds(timeout),
        queue=queue_name(queue),
    )
    holder: list[Connector[Any, Any]] = []

    async def run_as_step(ctx: Context, value: BaseModel) -> Any:
        # Used from a builder: the stored input is the public model; secrets come back here.
        return await holder[0].invoke_connector(ctx, value.model_dump(by_alias=True))

    made: Connector[Any, Any] = Connector(
        fn=run_as_step,
        options=options,
        input_codec=Codec(public),
        output_codec=Codec(output_type),
        takes_context=True,
        is_async=True,
        queue_spec=queue if isinstance(queue, Queue) else None,
        type=type,
        params_model=params_model,
        hidden=hidden,
        fields=fields,
        call=fn,
        call_takes_context=with_ctx,
        call_is_async=inspect.iscoroutinefunction(fn),
    )
    holder.append(made)
    return made


class ConnectorDecorator(Protocol):
    """What ``@plait.connector(type=...)`` returns."""

    @overload
    def __call__(self, fn: Callable[[Context, P], Coroutine[Any, Any, O]], /) -> Connector[P, O]: ...
    @overload
    def __call__(self, fn: Callable[[Context, P], O], /) -> Connector[P, O]: ...
    @overload
    def __call__(self, fn: Callable[[P], Coroutine[Any, Any, O]], /) -> Connector[P, O]: ...
    @overload
    def __call__(self, fn: Callable[[P], O], /) -> Connector[P, O]: ...


def connector(
    *,
    type: str,
    description: str = "",
    id: str | None = None,
    retry: Retry | None = None,
    timeout: Duration | None = None,
    queue: Queue | str | None = None,
) -> ConnectorDecorator:
    """Declare a connector: ``@plait.connector(type="slack.send")`` on ``fn(ctx, params) -> Output``.

    The connector is also a ``Step[Params, Output]`` (step id: ``id`` or the
    type) for the builder. ``retry``, ``timeout`` and ``queue`` apply to every
    block that uses it.
    """

    def build(fn: Callable[..., Any]) -> Any:
        return make_connector(fn, type=type, description=description, id=id, retry=retry, timeout=timeout, queue=queue)

    return build


def with_block_id(made: Connector[Any, Any], block_id: str) -> Connector[Any, Any]:
    """The connector renamed for one block (its step id is the block id)."""
    return replace(made, options=replace(made.options, id=block_id))
