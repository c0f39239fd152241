"""The committed plan: a serializable sequence of nodes with a content hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from plait.hooks import Hooks
from plait.payloads import Codec, type_name
from plait.queues import Queue
from plait.steps import Step
from plait.usage.models import Budget

In_contra = TypeVar("In_contra", contravariant=True)
Out_co = TypeVar("Out_co", covariant=True)

Predicate = Callable[..., bool]


@dataclass(frozen=True)
class ChildTask(Generic[In_contra, Out_co]):
    """A committed workflow used as a step: it runs as a child run of its own."""

    id: str
    workflow: Workflow[Any, Any]

    @property
    def input_type(self) -> Any:
        return self.workflow.input_type

    @property
    def output_type(self) -> Any:
        return self.workflow.output_type


Task = Step[Any, Any] | ChildTask[Any, Any]


@dataclass(frozen=True)
class ThenNode:
    task: Task
    kind: Literal["step"] = "step"


@dataclass(frozen=True)
class ParallelNode:
    id: str
    tasks: tuple[Task, ...]
    kind: Literal["parallel"] = "parallel"


@dataclass(frozen=True)
class BranchNode:
    id: str
    cases: tuple[tuple[Predicate, Task], ...]
    default: Task | None
    kind: Literal["branch"] = "branch"


@dataclass(frozen=True)
class MapNode:
    id: str
    fn: Callable[..., Any]
    takes_context: bool
    output_codec: Codec[Any]
    kind: Literal["map"] = "map"


@dataclass(frozen=True)
class ForeachNode:
    id: str
    task: Task
    concurrency: int
    kind: Literal["foreach"] = "foreach"


@dataclass(frozen=True)
class LoopNode:
    id: str
    task: Task
    predicate: Predicate
    until: bool
    max_iterations: int
    kind: Literal["loop"] = "loop"


@dataclass(frozen=True)
class SleepNode:
    """A durable timer: a fixed delay, a fixed time, or a time computed from the value."""

    id: str
    seconds: float | None
    until: datetime | None
    until_fn: Callable[..., datetime] | None
    kind: Literal["sleep"] = "sleep"


@dataclass(frozen=True)
class WaitNode:
    """Park until an event called ``event`` arrives; its payload becomes the value."""

    id: str
    event: str
    codec: Codec[Any]
    timeout: float | None
    default: Any
    has_default: bool
    kind: Literal["wait_for_event"] = "wait_for_event"


Node = ThenNode | ParallelNode | BranchNode | MapNode | ForeachNode | LoopNode | SleepNode | WaitNode


def node_id(node: Node) -> str:
    return node.task.id if isinstance(node, ThenNode) else node.id


def node_tasks(node: Node) -> tuple[Task, ...]:
    """The steps and child workflows a node runs."""
    if isinstance(node, ThenNode | ForeachNode | LoopNode):
        return (node.task,)
    if isinstance(node, ParallelNode):
        return node.tasks
    if isinstance(node, BranchNode):
        return tuple(task for _, task in node.cases) + ((node.default,) if node.default else ())
    return ()


def _fn_name(fn: Callable[..., Any]) -> str:
    name = str(getattr(fn, "__qualname__", type(fn).__name__))
    return name.replace("<", "").replace(">", "")


def _task_json(task: Task) -> dict[str, Any]:
    if isinstance(task, ChildTask):
        return {"type": "workflow", "id": task.id, "workflow": task.workflow.id, "version": task.workflow.version}
    options = task.options
    data: dict[str, Any] = {
        "type": "step",
        "id": task.id,
        "input": type_name(task.input_type),
        "output": type_name(task.output_type),
        "retry": options.retry.max_attempts,
        "timeout": options.timeout,
        "on_error": options.on_error,
        "queue": options.queue,
    }
    if options.skip_if is not None:  # only when set: the versions of workflows without it stay the same
        data["skip_if"] = _fn_name(options.skip_if)
    return data


def _node_json(node: Node) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": node.kind, "id": node_id(node)}
    if isinstance(node, ThenNode):
        data["task"] = _task_json(node.task)
    elif isinstance(node, ParallelNode):
        data["tasks"] = [_task_json(t) for t in node.tasks]
    elif isinstance(node, BranchNode):
        data["cases"] = [{"when": _fn_name(p), "task": _task_json(t)} for p, t in node.cases]
        data["default"] = _task_json(node.default) if node.default else None
    elif isinstance(node, MapNode):
        data["fn"] = _fn_name(node.fn)
        data["output"] = type_name(node.output_codec.type)
    elif isinstance(node, ForeachNode):
        data["task"] = _task_json(node.task)
        data["concurrency"] = node.concurrency
    elif isinstance(node, SleepNode):
        data["seconds"] = node.seconds
        data["until"] = node.until.isoformat() if node.until else None
        data["until_fn"] = _fn_name(node.until_fn) if node.until_fn else None
    elif isinstance(node, WaitNode):
        data["event"] = node.event
        data["schema"] = type_name(node.codec.type)
        data["timeout"] = node.timeout
        data["on_timeout"] = "default" if node.has_default else "fail"
    else:
        data["task"] = _task_json(node.task)
        data["until" if node.until else "while"] = _fn_name(node.predicate)
        data["max_iterations"] = node.max_iterations
    return data


def content_hash(
    workflow_id: str,
    input_codec: Codec[Any],
    output_codec: Codec[Any],
    nodes: tuple[Node, ...],
    timeout: float | None = None,
) -> str:
    """The default version: a hash of the plan's shape and types, not of function bodies.

    Fixing a bug inside a step keeps the version, so in-flight runs carry on;
    adding, removing, renaming or retyping a step changes it.
    """
    shape: dict[str, Any] = {
        "id": workflow_id,
        "input": input_codec.schema(),
        "output": output_codec.schema(),
        "nodes": [_node_json(n) for n in nodes],
    }
    if timeout is not None:  # only when set: the versions of workflows without one stay the same
        shape["timeout"] = timeout
    digest = hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()
    return digest[:16]


@dataclass(frozen=True)
class Placement:
    """Where a workflow's runs queue: the queue's name and limits, and the per-key grouping."""

    queue: str | None = None
    queue_spec: Queue | None = None
    concurrency_key: Callable[[Any], object] | None = None


class Workflow(Generic[In_contra, Out_co]):
    """A committed, immutable workflow; build one with ``plait.workflow(...)...commit()``."""

    def __init__(
        self,
        id: str,
        *,
        version: str | None,
        input_codec: Codec[Any],
        output_codec: Codec[Any],
        nodes: tuple[Node, ...],
        description: str = "",
        placement: Placement | None = None,
        hooks: Hooks | None = None,
        budget: Budget | None = None,
        timeout: float | None = None,
        on_error: str | None = None,
    ) -> None:
        self.id = id
        self.placement = placement or Placement()
        self.hooks = hooks
        self.budget = budget  # each run's default budget; engine.start(budget=...) overrides it
        self.timeout = timeout
        """Seconds a run may take from its start (or its retry), waiting included; None: no deadline."""
        self.on_error = on_error
        """The on_error of the steps that do not set their own (applied when the workflow was built)."""
        self.input_codec = input_codec
        self.output_codec = output_codec
        self.nodes = nodes
        self.description = description
        self.version = version or content_hash(id, input_codec, output_codec, nodes, timeout)
        self._node_index_by_task = {task.id: i for i, node in enumerate(nodes) for task in node_tasks(node)}
        self._node_index_by_task.update({node_id(node): i for i, node in enumerate(nodes)})

    @property
    def input_type(self) -> Any:
        return self.input_codec.type

    @property
    def output_type(self) -> Any:
        return self.output_codec.type

    def node_index_of(self, step_id: str) -> int | None:
        """Index of the top-level node that runs ``step_id`` (None if no such step)."""
        return self._node_index_by_task.get(step_id)

    def iter_steps(self) -> Iterator[Task]:
        for node in self.nodes:
            yield from node_tasks(node)

    def queues(self) -> list[Queue]:
        """The Queue objects this workflow and its steps name (to register their limits)."""
        found = [self.placement.queue_spec] if self.placement.queue_spec else []
        found += [task.queue_spec for task in self.iter_steps() if isinstance(task, Step) and task.queue_spec]
        return found

    def find_step(self, step_id: str) -> Task | None:
        """The step or child workflow with that id, if any."""
        return next((task for task in self.iter_steps() if task.id == step_id), None)

    def as_step(self, id: str | None = None) -> ChildTask[In_contra, Out_co]:
        """This workflow as a step of another one, optionally under another step id."""
        return ChildTask(id=id or self.id, workflow=self)

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain data: the same structure drives execution and display."""
        return {
            "id": self.id,
            "version": self.version,
            "description": self.description,
            "input": type_name(self.input_type),
            "output": type_name(self.output_type),
            "input_schema": self.input_codec.schema(),
            "output_schema": self.output_codec.schema(),
            "nodes": [_node_json(n) for n in self.nodes],
            "timeout": self.timeout,
            "on_error": self.on_error,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def to_mermaid(self) -> str:
        """A Mermaid flowchart of the plan, for docs and the dashboard."""
        return render_mermaid(self)

    def __repr__(self) -> str:
        return f"Workflow({self.id!r}, version={self.version!r})"


def _label(task: Task) -> str:
    if isinstance(task, ChildTask):
        return f'{task.id}["{task.id} (workflow {task.workflow.id})"]'
    return f'{task.id}["{task.id}"]'


def render_mermaid(workflow: Workflow[Any, Any]) -> str:
    lines = ["flowchart TD", '  __start(["start"])']
    previous = ["__start"]
    for node in workflow.nodes:
        if isinstance(node, ThenNode):
            entries = [node.task]
        elif isinstance(node, MapNode):
            lines.append(f'  {node.id}[/"{node.id}"/]')
            entries = []
        else:
            entries = list(node_tasks(node))
        if isinstance(node, MapNode | SleepNode | WaitNode):
            heads = [node.id]
        else:
            heads = [t.id for t in entries]
            for task in entries:
                lines.append(f"  {_label(task)}")
        for source in previous:
            for target in heads:
                if isinstance(node, BranchNode):
                    cases = dict((t.id, _fn_name(p)) for p, t in node.cases)
                    label = cases.get(target, "default")
                    lines.append(f"  {source} -->|{label}| {target}")
                else:
                    lines.append(f"  {source} --> {target}")
        if isinstance(node, ForeachNode):
            lines.append(f"  {node.task.id} -. each item .-> {node.task.id}")
        if isinstance(node, LoopNode):
            word = "until" if node.until else "while"
            lines.append(f"  {node.task.id} -. {word} {_fn_name(node.predicate)} .-> {node.task.id}")
        previous = heads
    lines.append('  __end(["end"])')
    lines.extend(f"  {source} --> __end" for source in previous)
    return "\n".join(lines)
