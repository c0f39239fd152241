"""Document -> ordinary plait ``Workflow``: runs durably like any code workflow.

Blocks are grouped in waves: a wave holds the blocks whose dependencies (the
blocks they reference and those in ``after``) are all in earlier waves. The
connector blocks of a wave run in parallel (one parallel node); its wait blocks
follow as durable sleep and event nodes. A final ``_output`` node renders the
document's ``output`` template. Each block is a step whose id is the block id:
checkpointed, retried, cancelled and evented like any step.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from plait.documents.conditions import evaluate
from plait.documents.connectors import Connector
from plait.documents.model import Block, WorkflowDocument
from plait.documents.problems import document_invalid
from plait.documents.schemas import codec_for
from plait.documents.templates import Reference, lookup_path, render, whole_template
from plait.documents.validation import Checker, DocumentView, TypeSource
from plait.payloads import Codec
from plait.steps import Step, StepOptions, approval
from plait.waiting import SkipRequest
from plait.workflow.graph import MapNode, Node, ParallelNode, SleepNode, ThenNode, WaitNode, Workflow

if TYPE_CHECKING:
    from plait.context import Context

OUTPUT_NODE = "_output"
ANY: Codec[Any] = Codec(Any)  # shared: building a TypeAdapter per block would dominate compile time


class Scope:
    """What templates read while one block runs: the run input, vars, env and earlier outputs."""

    def __init__(self, ctx: Context, variables: Mapping[str, Any], env: Mapping[str, str] | None) -> None:
        self._ctx = ctx
        self._vars = variables
        self._env = env
        self._outputs: dict[str, Any] = {}

    def resolve(self, ref: Reference) -> Any:
        if ref.root == "input":
            return lookup_path(self._ctx.workflow_input, ref.path)
        if ref.root == "vars":
            return lookup_path(self._vars, ref.path)
        if ref.root == "env":
            name = ref.path[0] if ref.path else ""
            return self._env.get(name) if self._env is not None else os.environ.get(name)
        if ref.root not in self._outputs:
            # The committed output JSON of the block (null when it was skipped or has not run).
            stored = self._ctx._execution.outputs_by_step.get(ref.root)
            self._outputs[ref.root] = None if stored is None else json.loads(stored)
        return lookup_path(self._outputs[ref.root], ref.path)


def condition_holds(block: Block, scope: Scope) -> bool:
    if block.when is None:
        return True
    ref = whole_template(block.when.ref)
    left = scope.resolve(ref) if ref is not None else None
    return evaluate(block.when.op, left, block.when.value)


class Compiler:
    """Turns a valid document into a workflow; env values come from ``env`` (else the environment)."""

    def __init__(self, types: TypeSource, env: Mapping[str, str] | None) -> None:
        self.types = types
        self.env = env

    def compile(self, document: WorkflowDocument | Mapping[str, Any] | str) -> Workflow[Any, Any]:
        doc = WorkflowDocument.parse(document)
        data = doc.to_data()
        view = DocumentView(data)
        problems = Checker(self.types).check_document(view, data["blocks"])
        if problems:
            raise document_invalid(problems, doc.id if isinstance(doc.id, str) else None)
        nodes: list[Node] = []
        for number, wave in enumerate(waves(view), start=1):
            steps: list[Step[Any, Any]] = []
            waits: list[Node] = []
            for block_id in wave:
                block = doc.blocks[view.index_of(block_id)]
                block_type = self.types.block_type(block.type)
                if isinstance(block_type, Connector):
                    steps.append(self._connector_step(doc, block, block_type))
                elif block.type == "wait.approval":
                    if not block.disabled:
                        steps.append(_approval_step(block))
                elif not block.disabled:
                    waits.append(self._wait_node(doc, block))
            if len(steps) == 1:
                nodes.append(ThenNode(steps[0]))
            elif steps:
                nodes.append(ParallelNode(f"_wave{number}", tuple(steps)))
            nodes.extend(waits)
        nodes.append(MapNode(OUTPUT_NODE, self._output_fn(doc), True, ANY))
        return Workflow(
            doc.id,
            version=doc.content_hash(),
            input_codec=codec_for(doc.input),
            output_codec=ANY,
            nodes=tuple(nodes),
            description=doc.description,
        )

    def _connector_step(self, doc: WorkflowDocument, block: Block, made: Connector[Any, Any]) -> Step[Any, Any]:
        variables, env = doc.vars, self.env

        async def run_block(ctx: Context, value: Any) -> Any:
            scope = Scope(ctx, variables, env)
            if block.disabled or not condition_holds(block, scope):
                raise SkipRequest()
            # One pass: values read from outputs and payloads are data, never templates again.
            params = render(block.params, scope.resolve)
            return await made.invoke_connector(ctx, params)

        options: StepOptions = replace(made.options, id=block.id, description=made.description)
        return Step(
            fn=run_block,
            options=options,
            input_codec=ANY,
            output_codec=made.output_codec,
            takes_context=True,
            is_async=True,
            queue_spec=made.queue_spec,
        )

    def _wait_node(self, doc: WorkflowDocument, block: Block) -> Node:
        params = block.params
        if block.type == "wait.event":
            has_default = "default" in params
            return WaitNode(
                block.id,
                str(params["name"]),
                codec_for(params.get("schema")),
                params.get("timeout_seconds"),
                params.get("default"),
                has_default,
            )
        variables, env = doc.vars, self.env
        fixed = params.get("seconds")
        if fixed is not None and block.when is None:
            return SleepNode(block.id, float(fixed), None, None)

        def wake_at(ctx: Context, value: Any) -> datetime:
            scope = Scope(ctx, variables, env)
            now = ctx._execution.host.clock.now()
            if not condition_holds(block, scope):
                return now
            if fixed is not None:
                return now + timedelta(seconds=float(fixed))
            until = render(params.get("until"), scope.resolve)
            try:
                moment = datetime.fromisoformat(str(until))
            except ValueError:
                ctx.log.warning("wait '%s': %r is not an ISO 8601 time; not waiting", block.id, str(until)[:60])
                return now
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

        return SleepNode(block.id, None, None, wake_at)

    def _output_fn(self, doc: WorkflowDocument) -> Any:
        variables, env, output = doc.vars, self.env, doc.output

        def render_output(ctx: Context, value: Any) -> Any:
            return render(output, Scope(ctx, variables, env).resolve)

        return render_output


def _approval_step(block: Block) -> Step[Any, Any]:
    schema = codec_for(block.params.get("schema")).type
    timeout = block.params.get("timeout_seconds")
    return approval(block.id, schema=schema, timeout=timeout, description=str(block.params.get("name", "")))


def waves(view: DocumentView) -> list[list[str]]:
    """Blocks grouped by depth: each block's dependencies are all in earlier waves."""
    level: dict[str, int] = {}

    def depth(block_id: str) -> int:
        # Iterative: a 1,000-block chain must not hit the recursion limit.
        stack = [block_id]
        while stack:
            current = stack[-1]
            pending = [d for d in view.deps(current) if d in view.blocks and d not in level]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            deps = [level[d] for d in view.deps(current) if d in view.blocks]
            level[current] = 1 + max(deps) if deps else 0
        return level[block_id]

    grouped: dict[int, list[str]] = {}
    for block_id in view.blocks:
        grouped.setdefault(depth(block_id), []).append(block_id)
    return [grouped[k] for k in sorted(grouped)]
