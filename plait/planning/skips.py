"""The steps of a recipe's body, and which of them a plan may skip.

A skipped step is recorded ``skipped`` at run time and hands its input on in
place of its output. So skipping is refused where a later step needs the real
output: in a code workflow, when the step's input type does not fit its output
type (what comes after expects the output); in a document, when a later block
or the document's output references the skipped block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from plait.documents.model import WorkflowDocument, short
from plait.documents.templates import roots
from plait.documents.validation import template_blocks
from plait.errors import PlanError
from plait.payloads import type_name
from plait.steps import Step
from plait.workflow.graph import ChildTask, Workflow, node_id, node_tasks


@dataclass(frozen=True)
class PlanStep:
    """One step of a plan: its id, what it is (``step``, ``child``, ``block``, ``sleep``...) and if it is skipped."""

    id: str
    kind: str
    skipped: bool = False


def body_steps(body: Workflow[Any, Any] | WorkflowDocument) -> list[PlanStep]:
    """Every step of the body in order: tasks and timer/event nodes of a workflow, blocks of a document."""
    if isinstance(body, WorkflowDocument):
        return [PlanStep(block.id, "block") for block in body.blocks]
    found: list[PlanStep] = []
    for node in body.nodes:
        tasks = node_tasks(node)
        if tasks:
            found.extend(PlanStep(t.id, "child" if isinstance(t, ChildTask) else "step") for t in tasks)
        else:
            found.append(PlanStep(node_id(node), node.kind))
    return found


def check_skips(body: Workflow[Any, Any] | WorkflowDocument, skip: Sequence[str]) -> None:
    """Raise PlanError for a skip naming no step, or one whose output a later step needs (naming both)."""
    steps = body_steps(body)
    known = {s.id for s in steps}
    unknown = [s for s in skip if s not in known]
    if unknown:
        listed = ", ".join(s.id for s in steps) or "none"
        raise PlanError(
            f"cannot skip {', '.join(short(s) for s in unknown)}: no such step in '{body.id}' (steps: {listed})",
            details={"unknown_steps": [short(s) for s in unknown], "steps": [s.id for s in steps]},
        )
    for step_id in skip:
        if isinstance(body, WorkflowDocument):
            _check_block_skip(body, step_id)
        else:
            _check_step_skip(body, step_id)


def _refuse(step_id: str, needed_by: str, why: str) -> PlanError:
    return PlanError(
        f"cannot skip '{step_id}': {why}",
        details={"step": step_id, "needed_by": needed_by},
    )


def _check_block_skip(doc: WorkflowDocument, block_id: str) -> None:
    block = doc.block(block_id)
    assert block is not None  # checked by the caller
    if block.type.startswith("wait.") and block.type != "wait.approval":
        raise _refuse(block_id, "", f"it is a {block.type} block; only connector and approval blocks can be skipped")
    for other in doc.blocks:
        if other.id != block_id and block_id in template_blocks(other.model_dump(mode="json")):
            raise _refuse(
                block_id,
                other.id,
                f"block '{other.id}' references its output; remove that reference or skip '{other.id}' too",
            )
    if block_id in roots(doc.output):
        raise _refuse(block_id, "output", "the document's output references it; change the output first")


def _check_step_skip(workflow: Workflow[Any, Any], step_id: str) -> None:
    index = workflow.node_index_of(step_id)
    assert index is not None  # checked by the caller
    node = workflow.nodes[index]
    task = next((t for t in node_tasks(node) if t.id == step_id), None)
    if task is None:
        raise _refuse(step_id, "", f"it is a {node.kind} node, not a step; only steps can be skipped")
    if isinstance(task, ChildTask):
        raise _refuse(step_id, "", "it runs a child workflow; only steps can be skipped")
    assert isinstance(task, Step)
    given, needed = task.input_codec.type, task.output_codec.type
    if fits(given, needed):
        return
    after = node_id(workflow.nodes[index + 1]) if index + 1 < len(workflow.nodes) else "the workflow's output"
    consumer = f"'{after}'" if index + 1 < len(workflow.nodes) else after
    raise _refuse(
        step_id,
        after,
        f"{consumer} needs its output ({type_name(needed)}), and a skipped step hands on its input "
        f"({type_name(given)}) instead",
    )


def fits(given: Any, needed: Any) -> bool:
    """Whether a value of type ``given`` can stand where ``needed`` is expected (unknown types are allowed)."""
    if given is Any or needed is Any or needed is object or given == needed:
        return True
    return isinstance(given, type) and isinstance(needed, type) and issubclass(given, needed)
