"""Engine methods for AI usage: reports over runs, a run's usage in detail, and raising a run's budget."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from plait.errors import InputValidationError, RunNotFound
from plait.runs import Run, RunHandle, StepRecord
from plait.store import usage as usage_table
from plait.store.base import RunRow
from plait.usage.models import Budget, UsageRow
from plait.usage.query import by_attempt, check_group_by, to_epoch, totals_of, usage_rows
from plait.workflow.graph import Workflow

if TYPE_CHECKING:
    from plait.clock import Clock
    from plait.loop_thread import LoopThread
    from plait.store.base import Store
    from plait.worker import Worker

GroupBy = Literal["workflow", "model", "day", "step"]
TimeBound = datetime | timedelta | float | None


class UsageMixin:
    """Part of ``Engine``: ``usage`` reports, ``raise_budget``, and usage on runs and step records."""

    # Provided by Engine.
    _loop: LoopThread
    _store: Store
    _worker: Worker
    namespace: str
    clock: Clock

    async def _get_row(self, run_id: str) -> RunRow:
        raise NotImplementedError

    def _lookup(self, workflow_id: str, version: str | None) -> Workflow[Any, Any] | None:
        raise NotImplementedError

    def usage(
        self,
        *,
        workflow: Workflow[Any, Any] | str | None = None,
        since: TimeBound = None,
        until: TimeBound = None,
        group_by: GroupBy = "workflow",
    ) -> list[UsageRow]:
        """Model usage (tokens, cost, calls, runs) per workflow, model, day (UTC) or step, biggest key order.

        ``since``/``until`` bound when calls were made: a datetime, a timedelta
        back from now, or epoch seconds. Each call counts once: the usage a
        rerun reused from its source run is not counted again.
        """
        return self._loop.run(self._usage(workflow, since, until, group_by))

    async def ausage(
        self,
        *,
        workflow: Workflow[Any, Any] | str | None = None,
        since: TimeBound = None,
        until: TimeBound = None,
        group_by: GroupBy = "workflow",
    ) -> list[UsageRow]:
        return await self._loop.run_async(self._usage(workflow, since, until, group_by))

    async def _usage(
        self, workflow: Workflow[Any, Any] | str | None, since: TimeBound, until: TimeBound, group_by: str
    ) -> list[UsageRow]:
        check_group_by(group_by)
        now = self.clock.now().timestamp()
        workflow_id = workflow.id if isinstance(workflow, Workflow) else workflow
        rows = await usage_table.report(
            self._store,
            self.namespace,
            group_by,
            workflow_id,
            to_epoch(since, now, "since"),
            to_epoch(until, now, "until"),
        )
        return usage_rows(group_by, rows)

    def raise_budget(
        self, run_id: str, *, max_cost: float | None = None, max_tokens: int | None = None
    ) -> RunHandle[Any]:
        """Give a run a bigger budget (unset limits are kept); a run its budget suspended continues.

        A run its budget failed continues with ``engine.retry(run_id)``.
        """
        return self._loop.run(self._raise_budget(run_id, max_cost, max_tokens))

    async def araise_budget(
        self, run_id: str, *, max_cost: float | None = None, max_tokens: int | None = None
    ) -> RunHandle[Any]:
        return await self._loop.run_async(self._raise_budget(run_id, max_cost, max_tokens))

    async def _raise_budget(self, run_id: str, max_cost: float | None, max_tokens: int | None) -> RunHandle[Any]:
        if max_cost is None and max_tokens is None:
            raise InputValidationError("raise_budget needs max_cost= or max_tokens=")
        row = await self._get_row(run_id)
        current = self._budget_of(row) or Budget()
        changes = {"max_cost": max_cost, "max_tokens": max_tokens}
        try:
            given = {name: value for name, value in changes.items() if value is not None}
            budget = Budget.model_validate({**current.model_dump(), **given})
        except ValueError as exc:
            raise InputValidationError(f"invalid budget for run {run_id}: {exc}") from exc
        status = await usage_table.set_budget(
            self._store, self.namespace, run_id, budget.model_dump_json(), self.clock.now().timestamp()
        )
        if status is None:
            raise RunNotFound(f"no run {run_id!r} in namespace '{self.namespace}'")
        self._worker.wake()
        return RunHandle(self, run_id)  # type: ignore[arg-type]

    def _budget_of(self, row: RunRow) -> Budget | None:
        if row.budget:
            return Budget.model_validate_json(row.budget)
        workflow = self._lookup(row.workflow_id, row.workflow_version)
        return workflow.budget if workflow is not None else None

    async def _run_with_usage(self, run: Run) -> Run:
        """The run with its usage split per model (its totals come with the row)."""
        if not run.usage.calls:
            return run
        calls = await usage_table.run_calls(self._store, self.namespace, run.id)
        return run.model_copy(update={"usage": run.usage.model_copy(update={"by_model": totals_of(calls).by_model})})

    async def _steps_with_usage(self, run_id: str, records: list[StepRecord]) -> list[StepRecord]:
        calls = await usage_table.run_calls(self._store, self.namespace, run_id)
        if not calls:
            return records
        per_attempt = by_attempt(calls)
        return [
            record.model_copy(update={"usage": per_attempt[(record.key, record.attempt)]})
            if (record.key, record.attempt) in per_attempt
            else record
            for record in records
        ]
