"""Engine methods that run one given run now, and start child runs from steps.

``engine.execute(run_id, budget=...)`` is for hosts that receive one queue
message per run (a serverless function): it runs that run in this process
until it parks, ends or the budget is spent, and leaves alone a run another
worker holds.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from plait.clock import to_seconds
from plait.errors import InputValidationError, WorkflowNotFound
from plait.runs import Run, RunHandle
from plait.store.base import NewRun, RunRow
from plait.workflow.graph import Workflow

if TYPE_CHECKING:
    from collections.abc import Mapping

    from plait.clock import Clock
    from plait.loop_thread import LoopThread
    from plait.worker import Worker

MAX_CHILD_KEY_CHARS = 200


class ExecuteMixin:
    """Part of ``Engine``: ``execute`` and the engine side of ``ctx.start_child``."""

    # Provided by Engine.
    _loop: LoopThread
    _worker: Worker
    namespace: str
    clock: Clock

    async def _get_row(self, run_id: str) -> RunRow:
        raise NotImplementedError

    def _lookup(self, workflow_id: str, version: str | None) -> Workflow[Any, Any] | None:
        raise NotImplementedError

    def _prepare_run(
        self,
        workflow: Workflow[Any, Any] | str,
        input: Any,
        run_id: str | None,
        idempotency_key: str | None,
        priority: int,
        delay: timedelta | float | None,
        metadata: Mapping[str, Any] | None,
    ) -> NewRun:
        raise NotImplementedError

    async def _create(self, new: NewRun) -> RunRow:
        raise NotImplementedError

    def execute(self, run_id: str, *, budget: timedelta | float = 60.0) -> Run:
        """Run ``run_id`` now, in this process, until it parks, ends or ``budget`` seconds are spent; its snapshot.

        Nothing runs when the run is not due (it sleeps or waits), has ended,
        or another worker holds its lease. Once the budget is spent the run is
        handed back at the next step boundary (the step in flight finishes
        first), for the next ``execute`` or any worker to continue. Works on a
        ``worker=False`` engine; the run's workflow version must be registered here.
        """
        return self._loop.run(self._execute_run(run_id, to_seconds(budget)))

    async def aexecute(self, run_id: str, *, budget: timedelta | float = 60.0) -> Run:
        """Async twin of ``execute``."""
        return await self._loop.run_async(self._execute_run(run_id, to_seconds(budget)))

    async def _execute_run(self, run_id: str, budget: float) -> Run:
        if not budget > 0:
            raise InputValidationError(f"execute(budget=...) must be a positive number of seconds, got {budget!r}")
        row = await self._get_row(run_id)
        if not row.is_terminal and self._lookup(row.workflow_id, row.workflow_version) is None:
            raise WorkflowNotFound(
                f"run {run_id} needs workflow '{row.workflow_id}' version '{row.workflow_version}', which is not "
                "registered in this process: engine.register(...) it before engine.execute"
            )
        if not row.is_terminal:
            await self._worker.execute_one(run_id, budget)
        return Run.from_row(await self._get_row(run_id))

    async def _start_child(
        self, parent: RunRow, step_key: str, workflow: Workflow[Any, Any] | str, input: Any, key: str | None
    ) -> RunHandle[Any]:
        """Create (or find) the child run of ``ctx.start_child``: at most one per parent run, step key and ``key``."""
        if key is not None and not (isinstance(key, str) and 0 < len(key) <= MAX_CHILD_KEY_CHARS and "\x00" not in key):
            raise InputValidationError(
                f"ctx.start_child(key=...) must be text of 1 to {MAX_CHILD_KEY_CHARS} characters, got {key!r:.80}"
            )
        # Derived from the parent run and step, not the attempt: a retried or re-run step finds the same child.
        idempotency_key = f"{parent.id}:{step_key}:child" + ("" if key is None else f":{key}")
        new = self._prepare_run(workflow, input, None, idempotency_key, parent.priority, None, None)
        new = replace(new, parent_run_id=parent.id, parent_step_key=step_key)
        row = await self._create(new)
        return RunHandle(self, row.id)  # type: ignore[arg-type]
