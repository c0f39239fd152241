"""The fluent builder: each method returns a new builder typed by its current output."""

from __future__ import annotations

import typing
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, Union, overload

from plait.clock import to_seconds
from plait.errors import WorkflowDefinitionError
from plait.hooks import Hooks
from plait.ids import is_valid_id
from plait.payloads import Codec, type_name
from plait.queues import Queue, queue_name
from plait.specs import Spec
from plait.steps import OnError, Step, takes_context
from plait.usage.models import Budget
from plait.workflow.graph import (
    BranchNode,
    ChildTask,
    ForeachNode,
    LoopNode,
    MapNode,
    Node,
    ParallelNode,
    Placement,
    SleepNode,
    Task,
    ThenNode,
    WaitNode,
    Workflow,
    node_id,
    node_tasks,
)

if TYPE_CHECKING:
    from plait.context import Context

In = TypeVar("In")
Out_co = TypeVar("Out_co", covariant=True)
Next = TypeVar("Next")
X = TypeVar("X")
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
D = TypeVar("D")
E = TypeVar("E")
Ev = TypeVar("Ev")
Dflt = TypeVar("Dflt")
SI = TypeVar("SI")
SO = TypeVar("SO")

# Anything `.then()` accepts: a step, a committed workflow (run as a child), or
# a workflow renamed with `.as_step(id=...)`.
StepLike = Union[Step[SI, SO], Workflow[SI, SO], ChildTask[SI, SO]]  # noqa: UP007 - generic alias needs Union
PredicateOn = Union[Callable[[SI], object], Callable[["Context", SI], object]]  # noqa: UP007


_NO_DEFAULT: Any = object()


def _as_task(item: object, where: str) -> Task:
    if isinstance(item, Step | ChildTask):
        return item
    if isinstance(item, Workflow):
        return item.as_step()
    raise WorkflowDefinitionError(
        f"{where} expects a step (made with @plait.step) or a committed workflow, got {item!r}"
    )


def _return_type(fn: Callable[..., Any]) -> Any:
    try:
        return typing.get_type_hints(fn).get("return", Any)
    except Exception:  # noqa: BLE001 - unresolvable annotations: treat the result as untyped JSON.
        return Any


class Builder(Generic[In, Out_co]):
    """Builds a workflow step by step; ``commit()`` freezes it into a ``Workflow``."""

    def __init__(
        self,
        id: str,
        *,
        input_codec: Codec[Any],
        declared_output: Any,
        version: str | None,
        description: str,
        nodes: tuple[Node, ...] = (),
        current_type: Any = None,
        placement: Placement | None = None,
        hooks: Hooks | None = None,
        budget: Budget | None = None,
        timeout: float | None = None,
        on_error: OnError | None = None,
    ) -> None:
        self._id = id
        self._placement = placement or Placement()
        self._hooks = hooks
        self._budget = budget
        self._timeout = timeout
        self._on_error = on_error
        self._defaulted: dict[int, tuple[Task, Task]] = {}  # id(step) -> (step kept alive, its copy)
        self._input_codec = input_codec
        self._declared_output = declared_output
        self._version = version
        self._description = description
        self._nodes = nodes
        self._current_type = input_codec.type if current_type is None else current_type

    def _taken_ids(self) -> set[str]:
        return {task.id for n in self._nodes for task in node_tasks(n)} | {node_id(n) for n in self._nodes}

    def _with(self, node: Node, output_type: Any) -> Any:
        clash = _repeated_ids(node, self._taken_ids())
        if clash is not None:
            raise WorkflowDefinitionError(
                f"workflow '{self._id}': step id '{clash}' is used twice; give the second use its own id "
                f"with step.with_options(id='{clash}_2') (or workflow.as_step(id=...))",
                step_id=clash,
            )
        return Builder(
            self._id,
            input_codec=self._input_codec,
            declared_output=self._declared_output,
            version=self._version,
            description=self._description,
            nodes=(*self._nodes, node),
            current_type=output_type,
            placement=self._placement,
            hooks=self._hooks,
            budget=self._budget,
            timeout=self._timeout,
            on_error=self._on_error,
        )

    def _task(self, item: object, where: str) -> Task:
        """``item`` as a task, with the workflow's ``on_error`` default when the step set none."""
        task = _as_task(item, where)
        if self._on_error is not None and isinstance(task, Step) and not task.options.on_error_given:
            # One copy per step object, so a step used for several outcomes of a branch stays one object.
            if id(task) not in self._defaulted:
                self._defaulted[id(task)] = (task, task.with_options(on_error=self._on_error))
            return self._defaulted[id(task)][1]
        return task

    def _auto_id(self, prefix: str, given: str | None, preferred: str | None = None) -> str:
        """``given`` (the user's id, checked as is), else a unique automatic id.

        An automatic id never clashes: the second ``wait_for_event("paid")`` is
        ``wait_paid-2``, so users need not name nodes to build a valid workflow.
        """
        if given is not None:
            node_id_ = given
        else:
            base = f"{prefix}_{len(self._nodes) + 1}"
            if preferred is not None and is_valid_id(preferred):
                base = preferred
            taken = self._taken_ids()
            node_id_, n = base, 1
            while node_id_ in taken:
                n += 1
                node_id_ = f"{base}-{n}"
        if not is_valid_id(node_id_):
            raise WorkflowDefinitionError(f"workflow '{self._id}': {node_id_!r} is not a valid id", step_id=node_id_)
        return node_id_

    def then(self, step: StepLike[Out_co, Next]) -> Builder[In, Next]:
        """Run ``step`` on the current value; a committed workflow runs as a child run."""
        task = self._task(step, "then()")
        result: Builder[In, Next] = self._with(ThenNode(task), task.output_type)
        return result

    @overload
    def parallel(self, a: StepLike[Out_co, A], b: StepLike[Out_co, B], /) -> Builder[In, tuple[A, B]]: ...
    @overload
    def parallel(
        self, a: StepLike[Out_co, A], b: StepLike[Out_co, B], c: StepLike[Out_co, C], /
    ) -> Builder[In, tuple[A, B, C]]: ...
    @overload
    def parallel(
        self, a: StepLike[Out_co, A], b: StepLike[Out_co, B], c: StepLike[Out_co, C], d: StepLike[Out_co, D], /
    ) -> Builder[In, tuple[A, B, C, D]]: ...
    @overload
    def parallel(
        self,
        a: StepLike[Out_co, A],
        b: StepLike[Out_co, B],
        c: StepLike[Out_co, C],
        d: StepLike[Out_co, D],
        e: StepLike[Out_co, E],
        /,
    ) -> Builder[In, tuple[A, B, C, D, E]]: ...
    @overload
    def parallel(self, *steps: StepLike[Out_co, Any], id: str | None = None) -> Builder[In, tuple[Any, ...]]: ...
    def parallel(self, *steps: StepLike[Out_co, Any], id: str | None = None) -> Builder[In, Any]:
        """Run the steps concurrently on the same value; the output is a tuple in their order."""
        if len(steps) < 2:
            raise WorkflowDefinitionError(f"workflow '{self._id}': parallel() needs at least two steps")
        tasks = tuple(self._task(s, "parallel()") for s in steps)
        output_type = tuple.__class_getitem__(tuple(t.output_type for t in tasks))
        return self._with(ParallelNode(self._auto_id("parallel", id), tasks), output_type)  # type: ignore[no-any-return]

    def branch(
        self,
        *cases: tuple[PredicateOn[Out_co], StepLike[Out_co, Next]],
        default: StepLike[Out_co, Next] | None = None,
        id: str | None = None,
    ) -> Builder[In, Next]:
        """Run the step of the first case whose predicate holds, else ``default``.

        With no match and no default the run fails with a clear error.
        """
        if not cases:
            raise WorkflowDefinitionError(f"workflow '{self._id}': branch() needs at least one (predicate, step)")
        built: list[tuple[Callable[..., Any], Task]] = []
        for case in cases:
            if not (isinstance(case, tuple) and len(case) == 2 and callable(case[0])):
                raise WorkflowDefinitionError(
                    f"workflow '{self._id}': each branch case is a (predicate, step) pair, got {case!r}"
                )
            built.append((case[0], self._task(case[1], "branch()")))
        default_task = self._task(default, "branch(default=...)") if default is not None else None
        output_type = built[0][1].output_type
        result: Builder[In, Next] = self._with(
            BranchNode(self._auto_id("branch", id), tuple(built), default_task), output_type
        )
        return result

    @overload
    def map(
        self, fn: Callable[[Out_co], Next], *, id: str | None = None, output: type[Next] | None = None
    ) -> Builder[In, Next]: ...
    @overload
    def map(
        self, fn: Callable[[Context, Out_co], Next], *, id: str | None = None, output: type[Next] | None = None
    ) -> Builder[In, Next]: ...
    def map(self, fn: Callable[..., Any], *, id: str | None = None, output: Any = None) -> Builder[In, Any]:
        """A small transform between steps, checkpointed like a step.

        The output type comes from ``output=`` or ``fn``'s return annotation;
        without either the value is stored as plain JSON.
        """
        if not callable(fn):
            raise WorkflowDefinitionError(f"workflow '{self._id}': map() takes a function, got {fn!r}")
        node_id_ = self._auto_id("map", id, preferred=getattr(fn, "__name__", None))
        output_type = output if output is not None else _return_type(fn)
        node = MapNode(node_id_, fn, takes_context(fn), Codec(output_type))
        return self._with(node, output_type)  # type: ignore[no-any-return]

    def foreach(
        self: Builder[In, list[X]], step: StepLike[X, Next], *, concurrency: int = 1
    ) -> Builder[In, list[Next]]:
        """Run ``step`` on every item of the current list; the output keeps the input order."""
        if concurrency < 1:
            raise WorkflowDefinitionError(f"workflow '{self._id}': foreach concurrency must be at least 1")
        task = self._task(step, "foreach()")
        result: Builder[In, list[Next]] = self._with(
            ForeachNode(task.id, task, concurrency), list.__class_getitem__(task.output_type)
        )
        return result

    def dowhile(
        self, step: StepLike[Out_co, Out_co], predicate: PredicateOn[Out_co], *, max_iterations: int = 1000
    ) -> Builder[In, Out_co]:
        """Run ``step`` repeatedly, each output feeding the next run, while ``predicate(output)`` holds."""
        result: Builder[In, Out_co] = self._loop(step, predicate, until=False, max_iterations=max_iterations)
        return result

    def dountil(
        self, step: StepLike[Out_co, Out_co], predicate: PredicateOn[Out_co], *, max_iterations: int = 1000
    ) -> Builder[In, Out_co]:
        """Run ``step`` repeatedly, each output feeding the next run, until ``predicate(output)`` holds."""
        result: Builder[In, Out_co] = self._loop(step, predicate, until=True, max_iterations=max_iterations)
        return result

    def _loop(self, step: object, predicate: object, *, until: bool, max_iterations: int) -> Any:
        task = self._task(step, "dountil()" if until else "dowhile()")
        if not callable(predicate):
            raise WorkflowDefinitionError(f"workflow '{self._id}': the loop predicate must be a function")
        if max_iterations < 1:
            raise WorkflowDefinitionError(f"workflow '{self._id}': max_iterations must be at least 1")
        return self._with(LoopNode(task.id, task, predicate, until, max_iterations), task.output_type)

    def sleep(self, duration: timedelta | float, *, id: str | None = None) -> Builder[In, Out_co]:
        """Wait ``duration`` durably; the value passes through unchanged.

        The run holds no worker, thread or lease while asleep; any worker on
        the database wakes it when due.
        """
        seconds = to_seconds(duration)
        if seconds < 0:
            raise WorkflowDefinitionError(f"workflow '{self._id}': sleep() needs a duration >= 0")
        result: Builder[In, Out_co] = self._with(
            SleepNode(self._auto_id("sleep", id), seconds, None, None), self._current_type
        )
        return result

    def sleep_until(
        self,
        when: datetime | Callable[[Out_co], datetime] | Callable[[Context, Out_co], datetime],
        *,
        id: str | None = None,
    ) -> Builder[In, Out_co]:
        """Wait durably until ``when``: a datetime, or a function of the value (or of ctx, value)."""
        if isinstance(when, datetime):
            if when.tzinfo is None:
                raise WorkflowDefinitionError(f"workflow '{self._id}': sleep_until() needs a timezone-aware datetime")
            node = SleepNode(self._auto_id("sleep", id), None, when, None)
        elif callable(when):
            node = SleepNode(self._auto_id("sleep", id), None, None, when)
        else:
            raise WorkflowDefinitionError(f"workflow '{self._id}': sleep_until() takes a datetime or a function")
        result: Builder[In, Out_co] = self._with(node, self._current_type)
        return result

    @overload
    def wait_for_event(
        self, name: str, *, schema: type[Ev], timeout: timedelta | float | None = None, id: str | None = None
    ) -> Builder[In, Ev]: ...
    @overload
    def wait_for_event(
        self,
        name: str,
        *,
        schema: type[Ev],
        timeout: timedelta | float,
        default: Dflt,
        id: str | None = None,
    ) -> Builder[In, Ev | Dflt]: ...
    def wait_for_event(
        self,
        name: str,
        *,
        schema: Any,
        timeout: timedelta | float | None = None,
        default: Any = _NO_DEFAULT,
        id: str | None = None,
    ) -> Builder[In, Any]:
        """Park until ``engine.send_event(run_id, name, payload)``; the validated payload is the next value.

        An event sent before the run gets here is kept and used when it does.
        After ``timeout`` the run fails with EventTimeout, unless ``default``
        is given: then the default becomes the value.
        """
        if not name or not isinstance(name, str):
            raise WorkflowDefinitionError(f"workflow '{self._id}': wait_for_event() needs an event name")
        seconds = None if timeout is None else to_seconds(timeout)
        if seconds is not None and seconds <= 0:
            raise WorkflowDefinitionError(f"workflow '{self._id}': wait_for_event() timeout must be positive")
        has_default = default is not _NO_DEFAULT
        if has_default and seconds is None:
            raise WorkflowDefinitionError(f"workflow '{self._id}': wait_for_event(default=...) needs a timeout")
        node_id_ = self._auto_id("wait", id, preferred=f"wait_{name}")
        node = WaitNode(node_id_, name, Codec(schema), seconds, None if not has_default else default, has_default)
        output_type = schema if not has_default else (schema | None if default is None else Any)
        return self._with(node, output_type)  # type: ignore[no-any-return]

    def commit(self) -> Workflow[In, Out_co]:
        """Freeze the builder into a runnable ``Workflow``; checks what types cannot."""
        if not self._nodes:
            raise WorkflowDefinitionError(f"workflow '{self._id}' has no steps: add one with .then(step)")
        if self._declared_output is not None and not _fits(self._current_type, self._declared_output):
            last = node_id(self._nodes[-1])
            raise WorkflowDefinitionError(
                f"workflow '{self._id}' declares output={type_name(self._declared_output)} but its last step "
                f"'{last}' returns {type_name(self._current_type)}: change output= or add a step that converts it",
                step_id=last,
            )
        output_type = self._current_type if self._declared_output is None else self._declared_output
        output_codec: Codec[Any] = Codec(output_type)
        return Workflow(
            self._id,
            version=self._version,
            input_codec=self._input_codec,
            output_codec=output_codec,
            nodes=self._nodes,
            description=self._description,
            placement=self._placement,
            hooks=self._hooks,
            budget=self._budget,
            timeout=self._timeout,
            on_error=self._on_error,
        )


def _repeated_ids(node: Node, taken: set[str]) -> str | None:
    """The first id ``node`` would use twice in the workflow (None if all are new).

    Ids key checkpoints: two steps with one id would read each other's result.
    Within one node a repeat is refused too (``parallel(a, a)``), except the
    same step object as several outcomes of one ``branch``: only one of them runs.
    """
    seen: dict[str, Task] = {}
    for task in node_tasks(node):
        known = seen.get(task.id)
        if task.id in taken or (known is not None and not (isinstance(node, BranchNode) and known is task)):
            return task.id
        seen[task.id] = task
    return node_id(node) if node_id(node) in taken else None


def _fits(actual: Any, declared: Any) -> bool:
    if actual is Any or declared is Any or actual == declared:
        return True
    if isinstance(actual, type) and isinstance(declared, type):
        return issubclass(actual, declared)
    return False


@overload
def workflow(
    id: Spec[In, Any],
    *,
    description: str = "",
    queue: Queue | str | None = None,
    concurrency_key: Callable[[In], object] | None = None,
    hooks: Hooks | None = None,
    budget: Budget | None = None,
    timeout: timedelta | float | None = None,
    on_error: OnError | None = None,
) -> Builder[In, In]: ...
@overload
def workflow(
    id: str,
    *,
    input: type[In],
    output: type[Any] | None = None,
    version: str | None = None,
    description: str = "",
    queue: Queue | str | None = None,
    concurrency_key: Callable[[In], object] | None = None,
    hooks: Hooks | None = None,
    budget: Budget | None = None,
    timeout: timedelta | float | None = None,
    on_error: OnError | None = None,
) -> Builder[In, In]: ...
def workflow(
    id: str | Spec[Any, Any],
    *,
    input: Any = None,
    output: type[Any] | None = None,
    version: str | None = None,
    description: str = "",
    queue: Queue | str | None = None,
    concurrency_key: Callable[[Any], object] | None = None,
    hooks: Hooks | None = None,
    budget: Budget | None = None,
    timeout: timedelta | float | None = None,
    on_error: OnError | None = None,
) -> Builder[Any, Any]:
    """Start building a workflow that takes ``input``; ``output`` is checked at ``commit()``.

    ``plait.workflow(spec)`` implements a ``plait.spec``: id, input, output
    and version come from it, so runs started from the spec are this workflow's.
    ``version`` pins the version name; by default it is a hash of the plan.
    ``queue`` puts its runs in a queue whose limits hold across all workers;
    ``concurrency_key(input)`` groups runs for the queue's ``key_concurrency``
    (e.g. one run at a time per customer). ``hooks`` are called around this
    workflow's runs and steps (see ``plait.Hooks``). ``budget`` limits each
    run's model usage (see ``plait.Budget``; ``engine.start(budget=...)`` overrides it).
    ``timeout`` is a
    deadline for the whole run, waiting included: when it passes the run ends
    ``failed`` with ``WorkflowTimeout`` (checked durably, like a timer; a
    retried run gets a new deadline). ``on_error`` is the default ``on_error``
    of its steps ("fail", "skip" or "continue").
    """
    if isinstance(id, Spec):
        if input is not None or output is not None or version is not None:
            raise WorkflowDefinitionError(
                f"workflow({id!r}) takes its input, output and version from the spec; change the spec instead"
            )
        implemented = id
        id, version, output = implemented.id, implemented.version, implemented.output_type
        input = implemented.input_type
        description = description or implemented.description
    if input is None:
        raise WorkflowDefinitionError(f"workflow {id!r} needs input=Type (or a plait.spec)")
    if not is_valid_id(id):
        raise WorkflowDefinitionError(
            f"workflow id {id!r} is not valid: use letters, digits, '_', '-' or '.', starting with a letter or '_'"
        )
    if concurrency_key is not None and not callable(concurrency_key):
        raise WorkflowDefinitionError(f"workflow '{id}': concurrency_key must be a function of the input")
    placement = Placement(queue_name(queue), queue if isinstance(queue, Queue) else None, concurrency_key)
    seconds = None if timeout is None else to_seconds(timeout)
    if seconds is not None and not seconds > 0:
        raise WorkflowDefinitionError(f"workflow '{id}': timeout must be positive, got {timeout!r}")
    if on_error is not None and on_error not in ("fail", "skip", "continue"):
        raise WorkflowDefinitionError(
            f"workflow '{id}': on_error must be 'fail', 'skip' or 'continue', not {on_error!r}"
        )
    return Builder(
        id,
        input_codec=Codec(input),
        declared_output=output,
        version=version,
        description=description,
        placement=placement,
        hooks=hooks,
        budget=budget,
        timeout=seconds,
        on_error=on_error,
    )
