"""Steps: typed functions that the engine runs and checkpoints."""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
import types
import typing
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, overload

from pydantic import BaseModel

from plait.clock import to_seconds
from plait.errors import RunCancelledSignal, WorkflowDefinitionError
from plait.ids import is_valid_id
from plait.payloads import Codec
from plait.queues import Queue, queue_name
from plait.step_threads import StepThreads
from plait.waiting import Approval, Poll, SkipRequest, SuspendRequest

if TYPE_CHECKING:
    from plait.context import Context

In_contra = TypeVar("In_contra", contravariant=True)
Out_co = TypeVar("Out_co", covariant=True)
O_co = TypeVar("O_co", covariant=True)
I = TypeVar("I")  # noqa: E741 - reads as "input" in signatures
O = TypeVar("O")  # noqa: E741 - reads as "output" in signatures

OnError = Literal["fail", "skip", "continue"]
Duration = timedelta | float | int


@dataclass(frozen=True)
class Retry:
    """How a failing step is retried: exponential back-off with jitter.

    The delay before attempt n+1 is ``initial * backoff**(n-1)``, capped at
    ``max_delay``; ``jitter`` (0..1) randomizes it by up to that fraction so
    failing runs do not retry in lock-step. Only exceptions in ``retry_on``
    are retried.
    """

    max_attempts: int = 3
    initial: Duration = 1.0
    backoff: float = 2.0
    max_delay: Duration = 60.0
    jitter: float = 0.1
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise WorkflowDefinitionError("Retry(max_attempts=...) must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise WorkflowDefinitionError("Retry(jitter=...) must be between 0 and 1")
        if to_seconds(self.initial) < 0 or self.backoff < 1:
            raise WorkflowDefinitionError("Retry needs initial >= 0 and backoff >= 1")

    def delay_before(self, next_attempt: int) -> float:
        """Seconds to wait before attempt ``next_attempt`` (2 is the first retry)."""
        base = to_seconds(self.initial) * self.backoff ** max(0, next_attempt - 2)
        capped = min(base, to_seconds(self.max_delay))
        spread = capped * self.jitter
        return max(0.0, capped + random.uniform(-spread, spread))

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        return attempt < self.max_attempts and isinstance(error, self.retry_on)


NO_RETRY = Retry(max_attempts=1)


@dataclass(frozen=True)
class StepOptions:
    """The options every step carries; ``Step.with_options`` changes them."""

    id: str
    description: str = ""
    retry: Retry = NO_RETRY
    timeout: float | None = None
    on_error: OnError = "fail"
    queue: str | None = None
    # Whether on_error was given for this step; if not, its workflow's on_error= default applies.
    on_error_given: bool = False
    # pred(value) or pred(ctx, value): when it holds the step is recorded skipped and the value passes through.
    skip_if: Callable[..., Any] | None = None


@dataclass(frozen=True, eq=False)
class Step(Generic[In_contra, Out_co]):
    """A function plait runs durably, typed by its input and output.

    Build one with ``@plait.step`` or ``plait.create_step``. Its output is
    validated against the output type and checkpointed before the next step
    starts.
    """

    fn: Callable[..., Any]
    options: StepOptions
    input_codec: Codec[Any]
    output_codec: Codec[Any]
    takes_context: bool
    is_async: bool = field(default=False)
    # A step that returned Poll(state) is checked with check([ctx,] state) until done.
    check: Callable[..., Any] | None = None
    # Data passed to run.resume(...) after ctx.suspend(...) is validated by this.
    resume_codec: Codec[Any] | None = None
    # Set on approval steps: the schema of the approver's data; the function never runs.
    approval_codec: Codec[Any] | None = None
    # The queue's limits when the step named a Queue object (registered with its workflow).
    queue_spec: Queue | None = None
    # The Pydantic model of the step's settings (ctx.config), given per run by engine.start(config=...).
    config_type: type[BaseModel] | None = None

    @property
    def id(self) -> str:
        return self.options.id

    @property
    def description(self) -> str:
        return self.options.description

    @property
    def input_type(self) -> Any:
        return self.input_codec.type

    @property
    def output_type(self) -> Any:
        return self.output_codec.type

    def with_options(
        self,
        *,
        id: str | None = None,
        description: str | None = None,
        retry: Retry | None = None,
        timeout: Duration | None = None,
        on_error: OnError | None = None,
        queue: Queue | str | None = None,
        skip_if: Callable[..., Any] | None = None,
    ) -> Step[In_contra, Out_co]:
        """A copy of this step with some options changed, e.g. a new ``id`` to use it twice."""
        changes: dict[str, Any] = {
            "id": id,
            "description": description,
            "retry": retry,
            "timeout": None if timeout is None else to_seconds(timeout),
            "on_error": on_error,
            "on_error_given": True if on_error is not None else None,
            "queue": queue_name(queue),
            "skip_if": skip_if,
        }
        options = replace(self.options, **{k: v for k, v in changes.items() if v is not None})
        _check_options(options)
        spec = queue if isinstance(queue, Queue) else self.queue_spec if queue is None else None
        return replace(self, options=options, queue_spec=spec)

    async def invoke(self, ctx: Context, value: Any) -> Any:
        """Run the function once; sync functions run in a worker thread."""
        return await call_user_function(self.fn, self.takes_context, self.is_async, ctx, value)

    def __repr__(self) -> str:
        return f"Step({self.id!r})"

    async def invoke_check(self, ctx: Context, state: Any) -> Any:
        """Run ``check`` once for a step that returned ``Poll``."""
        if self.check is None:
            raise WorkflowDefinitionError(
                f"step '{self.id}' returned plait.Poll but has no check: declare @plait.step(check=fn)",
                step_id=self.id,
            )
        is_async = inspect.iscoroutinefunction(self.check)
        return await call_user_function(self.check, takes_context(self.check), is_async, ctx, state)


class UserCodeExit(Exception):
    """Internal: carries a ``SystemExit``, ``KeyboardInterrupt`` or ``GeneratorExit`` that user code raised.

    Raw, asyncio would stop its loop on the first two and close the awaiting
    coroutines on the third; carried, it is an ordinary failure of the step.
    """

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"{type(original).__name__}: {original}")
        self.original = original


def _carry(exc: BaseException) -> BaseException:
    """What to raise for ``exc`` from user code: itself, or a ``UserCodeExit`` around a bare BaseException."""
    if isinstance(exc, Exception | asyncio.CancelledError | SuspendRequest | SkipRequest | RunCancelledSignal):
        return exc
    return UserCodeExit(exc)


async def call_user_function(
    fn: Callable[..., Any], with_context: bool, is_async: bool, ctx: Context, value: Any
) -> Any:
    """Call ``fn(value)`` or ``fn(ctx, value)``; sync functions run in the loop's thread pool."""
    args = (ctx, value) if with_context else (value,)

    def call_sync() -> Any:
        try:
            return fn(*args)
        except BaseException as exc:
            carried = _carry(exc)
            if carried is exc:
                raise
            raise carried from None

    try:
        if is_async:
            return await fn(*args)
        loop = asyncio.get_running_loop()
        threads = StepThreads.of(loop)
        result = await (threads.run(call_sync) if threads is not None else loop.run_in_executor(None, call_sync))
        if inspect.isawaitable(result):  # a plain callable that returned a coroutine
            return await result
        return result
    except BaseException as exc:
        carried = _carry(exc)
        if carried is exc:
            raise
        raise carried from None


def _check_options(options: StepOptions) -> None:
    if not is_valid_id(options.id):
        raise WorkflowDefinitionError(
            f"step id {options.id!r} is not valid: use letters, digits, '_', '-' or '.', starting with a letter or '_'",
            step_id=options.id,
        )
    if options.on_error not in ("fail", "skip", "continue"):
        raise WorkflowDefinitionError(
            f"step '{options.id}': on_error must be 'fail', 'skip' or 'continue', not {options.on_error!r}",
            step_id=options.id,
        )
    if options.timeout is not None and options.timeout <= 0:
        raise WorkflowDefinitionError(f"step '{options.id}': timeout must be positive", step_id=options.id)
    if options.skip_if is not None and not callable(options.skip_if):
        raise WorkflowDefinitionError(
            f"step '{options.id}': skip_if must be a function of the value (or of ctx, value)", step_id=options.id
        )


def _is_context_annotation(annotation: Any) -> bool:
    from plait.context import Context

    return annotation is Context or annotation == "Context" or annotation == "plait.Context"


def required_positional(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    """The positional parameters of ``fn`` without defaults ([] when it has no signature)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]


@functools.cache
def takes_context(fn: Callable[..., Any]) -> bool:
    """Whether a predicate or map function takes ``(ctx, value)`` rather than ``(value)``."""
    return len(required_positional(fn)) == 2


def _type_hints(fn: Callable[..., Any], step_id: str) -> dict[str, Any]:
    """``fn``'s annotations resolved, also against the scope that defined it (a model local to a function)."""
    try:
        return typing.get_type_hints(fn)
    except NameError:
        pass
    frame = inspect.currentframe()
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    try:
        return typing.get_type_hints(fn, localns=dict(frame.f_locals) if frame is not None else None)
    except Exception as exc:
        raise WorkflowDefinitionError(
            f"step '{step_id}': cannot resolve its type annotations ({exc}); define the types where the "
            "step can see them, or use plait.create_step(input=..., output=...)",
            step_id=step_id,
        ) from exc
    finally:
        del frame


def _signature_types(fn: Callable[..., Any], step_id: str) -> tuple[bool, Any, Any]:
    """(takes_context, input type, output type) read from ``fn``'s annotations."""
    params = required_positional(fn)
    if len(params) not in (1, 2):
        raise WorkflowDefinitionError(
            f"step '{step_id}' must take (value) or (ctx, value); it takes {len(params)} required parameters",
            step_id=step_id,
        )
    hints = _type_hints(fn, step_id)
    takes_context = len(params) == 2
    if (
        takes_context
        and not _is_context_annotation(hints.get(params[0].name, _Missing))
        and (params[0].name not in ("ctx", "context"))
    ):
        raise WorkflowDefinitionError(
            f"step '{step_id}': a two-parameter step takes (ctx: plait.Context, value)",
            step_id=step_id,
        )
    input_type = hints.get(params[-1].name, Any)
    output_type = hints.get("return", Any)
    return takes_context, input_type, output_type


class _Missing:
    pass


class PollStepDecorator(Protocol[O_co]):
    """What ``@plait.step(check=...)`` returns: the step's output type is the check's."""

    @overload
    def __call__(self, fn: Callable[[Context, I], Any], /) -> Step[I, O_co]: ...
    @overload
    def __call__(self, fn: Callable[[I], Any], /) -> Step[I, O_co]: ...


class StepDecorator(Protocol):
    """What ``@plait.step(...)`` with options returns."""

    @overload
    def __call__(self, fn: Callable[[Context, I], Coroutine[Any, Any, O]], /) -> Step[I, O]: ...
    @overload
    def __call__(self, fn: Callable[[Context, I], O], /) -> Step[I, O]: ...
    @overload
    def __call__(self, fn: Callable[[I], Coroutine[Any, Any, O]], /) -> Step[I, O]: ...
    @overload
    def __call__(self, fn: Callable[[I], O], /) -> Step[I, O]: ...


@overload
def step(fn: Callable[[Context, I], Coroutine[Any, Any, O]], /) -> Step[I, O]: ...
@overload
def step(fn: Callable[[Context, I], O], /) -> Step[I, O]: ...
@overload
def step(fn: Callable[[I], Coroutine[Any, Any, O]], /) -> Step[I, O]: ...
@overload
def step(fn: Callable[[I], O], /) -> Step[I, O]: ...
@overload
def step(
    *,
    check: Callable[[Context, Any], Coroutine[Any, Any, O | Poll[Any]]]
    | Callable[[Context, Any], O | Poll[Any]]
    | Callable[[Any], Coroutine[Any, Any, O | Poll[Any]]]
    | Callable[[Any], O | Poll[Any]],
    id: str | None = None,
    description: str | None = None,
    retry: Retry | None = None,
    timeout: Duration | None = None,
    on_error: OnError | None = None,
    queue: Queue | str | None = None,
    resume_schema: Any = None,
    skip_if: Callable[..., Any] | None = None,
    config: type[BaseModel] | None = None,
) -> PollStepDecorator[O]: ...
@overload
def step(
    *,
    id: str | None = None,
    description: str | None = None,
    retry: Retry | None = None,
    timeout: Duration | None = None,
    on_error: OnError | None = None,
    queue: Queue | str | None = None,
    resume_schema: Any = None,
    skip_if: Callable[..., Any] | None = None,
    config: type[BaseModel] | None = None,
) -> StepDecorator: ...
def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    id: str | None = None,
    description: str | None = None,
    retry: Retry | None = None,
    timeout: Duration | None = None,
    on_error: OnError | None = None,
    queue: Queue | str | None = None,
    resume_schema: Any = None,
    check: Callable[..., Any] | None = None,
    skip_if: Callable[..., Any] | None = None,
    config: type[BaseModel] | None = None,
) -> Any:
    """Turn ``fn(value)`` or ``fn(ctx, value)`` into a durable ``Step``.

    Input and output types come from the annotations. Use bare (``@step``) or
    with options (``@step(retry=Retry(5), timeout=30)``). ``check`` makes a
    long-polling step: the function returns ``plait.Poll(state, every=...)``
    and ``check(state)`` is called durably until it returns the output (its
    return annotation, without ``Poll``, is the step's output type).
    ``resume_schema`` validates the data given to ``run.resume`` after
    ``ctx.suspend``. ``skip_if`` is ``pred(value)`` or ``pred(ctx, value)``:
    when it holds the step does not run, it is recorded ``skipped`` and the
    value passes through unchanged. ``on_error`` left unset takes the
    workflow's ``on_error=`` (else "fail").
    ``config`` is a Pydantic model of the step's settings:
    ``ctx.config`` is an instance of it, with the values the run was started
    with (``engine.start(..., config={step_id: {...}})``) or its defaults.
    """

    def build(func: Callable[..., Any]) -> Step[Any, Any]:
        step_id: str = id or str(getattr(func, "__name__", ""))
        takes_ctx, input_type, output_type = _signature_types(func, step_id)
        if inspect.iscoroutinefunction(func) and output_type is not Any:
            output_type = _unwrap_awaitable(output_type)
        if check is not None:
            output_type = _without_poll(_return_annotation(check))
        made = _make_step(
            func,
            StepOptions(
                id=step_id,
                description=description if description is not None else (inspect.getdoc(func) or ""),
                retry=retry or NO_RETRY,
                timeout=None if timeout is None else to_seconds(timeout),
                on_error=on_error or "fail",
                queue=queue_name(queue),
                on_error_given=on_error is not None,
                skip_if=skip_if,
            ),
            input_type,
            output_type,
            takes_ctx,
        )
        resume_codec: Codec[Any] | None = None if resume_schema is None else Codec(resume_schema)
        spec = queue if isinstance(queue, Queue) else None
        config_type = _config_model(config, step_id)
        return replace(made, check=check, resume_codec=resume_codec, queue_spec=spec, config_type=config_type)

    if fn is not None:
        return build(fn)
    return build


def _return_annotation(fn: Callable[..., Any]) -> Any:
    try:
        annotation = typing.get_type_hints(fn).get("return", Any)
    except Exception:  # noqa: BLE001 - unresolvable annotations: the output is untyped JSON.
        return Any
    return _unwrap_awaitable(annotation) if inspect.iscoroutinefunction(fn) else annotation


def _without_poll(annotation: Any) -> Any:
    """``Result | Poll[S]`` -> ``Result``: what a check finally returns."""
    args = [a for a in typing.get_args(annotation) if a is not Poll and typing.get_origin(a) is not Poll]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and args:
        return args[0] if len(args) == 1 else typing.Union[tuple(args)]  # noqa: UP007
    return annotation


def _unwrap_awaitable(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (Awaitable, Coroutine):
        return typing.get_args(annotation)[-1]
    return annotation


def _make_step(
    fn: Callable[..., Any], options: StepOptions, input_type: Any, output_type: Any, takes_context: bool
) -> Step[Any, Any]:
    _check_options(options)
    try:
        input_codec: Codec[Any] = Codec(input_type)
        output_codec: Codec[Any] = Codec(output_type)
    except Exception as exc:
        raise WorkflowDefinitionError(
            f"step '{options.id}': its input or output type cannot be validated by Pydantic ({exc})",
            step_id=options.id,
        ) from exc
    return Step(
        fn=fn,
        options=options,
        input_codec=input_codec,
        output_codec=output_codec,
        takes_context=takes_context,
        is_async=inspect.iscoroutinefunction(fn),
    )


def create_step(
    *,
    id: str,
    input: type[I],
    output: type[O],
    execute: Callable[[Context, I], Awaitable[O]] | Callable[[Context, I], O],
    description: str = "",
    retry: Retry | None = None,
    timeout: Duration | None = None,
    on_error: OnError | None = None,
    queue: Queue | str | None = None,
    skip_if: Callable[..., Any] | None = None,
    config: type[BaseModel] | None = None,
) -> Step[I, O]:
    """The explicit form of ``@step``: ``execute(ctx, value)`` with declared types."""
    options = StepOptions(
        id=id,
        description=description,
        retry=retry or NO_RETRY,
        timeout=None if timeout is None else to_seconds(timeout),
        on_error=on_error or "fail",
        queue=queue_name(queue),
        on_error_given=on_error is not None,
        skip_if=skip_if,
    )
    made = _make_step(execute, options, input, output, takes_context=True)
    config_type = _config_model(config, id)
    return replace(made, queue_spec=queue if isinstance(queue, Queue) else None, config_type=config_type)


def _config_model(config: Any, step_id: str) -> type[BaseModel] | None:
    if config is None or (isinstance(config, type) and issubclass(config, BaseModel)):
        return config
    raise WorkflowDefinitionError(
        f"step '{step_id}': config= takes a Pydantic model class (class Settings(BaseModel): ...), got {config!r}",
        step_id=step_id,
    )


def approval(
    id: str, *, schema: type[O], timeout: Duration | None = None, description: str = ""
) -> Step[Any, Approval[O]]:
    """A step that parks the run until ``run.approve(id, data)`` or ``run.reject(id, reason)``.

    Its output is ``plait.Approval[schema]``: branch on ``.approved``. With
    ``timeout`` the step fails with EventTimeout when nobody decides in time.
    """

    def never_called(value: Any) -> Any:
        raise AssertionError("approval steps are resolved by run.approve/run.reject")

    made = _make_step(
        never_called,
        StepOptions(id=id, description=description, timeout=None if timeout is None else to_seconds(timeout)),
        Any,
        Approval[schema],  # type: ignore[valid-type]
        takes_context=False,
    )
    return replace(made, approval_codec=Codec(schema))
