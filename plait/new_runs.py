"""The row of a new run, built from its workflow in one place.

Every way a run comes into being (``start``, a child run, ``rerun_from``, a
schedule fire, a completion trigger) builds its row here, so each carries
its queue and concurrency key and every claim can hold it to its queue's limits.
"""

from __future__ import annotations

from typing import Any

from plait.ids import new_run_id
from plait.queues import concurrency_key_of
from plait.specs import Spec
from plait.store.base import NewRun
from plait.workflow.graph import Workflow

_LOAD = object()


def new_run_row(
    workflow: Workflow[Any, Any],
    input_json: str,
    *,
    namespace: str,
    now: float,
    value: Any = _LOAD,
    run_id: str | None = None,
    ready_at: float | None = None,
    **fields: Any,
) -> NewRun:
    """A ``NewRun`` of ``workflow`` with ``input_json``, placed in the workflow's queue under its concurrency key.

    ``value`` is the validated input when the caller has it (else it is loaded
    from ``input_json`` to compute the key); ``fields`` are the other
    ``NewRun`` fields (idempotency key, priority, metadata, parent, owner...).
    Raises WorkflowDefinitionError when the workflow's ``concurrency_key`` fails.
    """
    if value is _LOAD:
        value = workflow.input_codec.load(input_json) if workflow.placement.concurrency_key else None
    return NewRun(
        id=run_id or new_run_id(),
        namespace=namespace,
        workflow_id=workflow.id,
        workflow_version=workflow.version,
        input=input_json,
        created_at=now,
        ready_at=now if ready_at is None else ready_at,
        queue=workflow.placement.queue,
        concurrency_key=concurrency_key_of(workflow, value),
        **fields,
    )


def spec_run_row(
    spec: Spec[Any, Any],
    input_json: str,
    *,
    namespace: str,
    now: float,
    value: Any = None,
    run_id: str | None = None,
    ready_at: float | None = None,
    **fields: Any,
) -> NewRun:
    """A ``NewRun`` of a spec started where no workflow implements it: the implementing worker claims it.

    It has no queue or concurrency key: those belong to the implementation, unknown here.
    """
    return NewRun(
        id=run_id or new_run_id(),
        namespace=namespace,
        workflow_id=spec.id,
        workflow_version=spec.version,
        input=input_json,
        created_at=now,
        ready_at=now if ready_at is None else ready_at,
        **fields,
    )
