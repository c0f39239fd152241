"""Engine methods that signal a waiting run: events, approvals and resumes, validated before they are stored."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from plait.errors import InputValidationError, RunNotFound, RunStateError, WorkflowNotFound
from plait.payloads import ANY, Codec, validate_input
from plait.steps import Step
from plait.store import inbox
from plait.store.base import Decision, RunRow
from plait.waiting import Approval, approval_event, resume_event
from plait.workflow.graph import WaitNode, Workflow

if TYPE_CHECKING:
    from plait.clock import Clock
    from plait.loop_thread import LoopThread
    from plait.store.base import Store
    from plait.worker import Worker


class SignalsMixin:
    """Part of ``Engine``: ``send_event``, ``approve``/``reject`` and ``resume``."""

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

    def send_event(self, run_id: str, name: str, payload: Any = None, *, event_id: str | None = None) -> bool:
        """Deliver event ``name`` to a run; it is kept until the run waits for it.

        The payload is validated against the wait's schema now (nothing is
        stored when it is invalid). The same ``event_id`` is delivered once:
        repeats return False.
        """
        return self._loop.run(self._send_event(run_id, name, payload, event_id))

    async def asend_event(self, run_id: str, name: str, payload: Any = None, *, event_id: str | None = None) -> bool:
        return await self._loop.run_async(self._send_event(run_id, name, payload, event_id))

    async def _send_event(self, run_id: str, name: str, payload: Any, event_id: str | None) -> bool:
        row, workflow = await self._run_and_workflow(run_id)
        waits = [n for n in workflow.nodes if isinstance(n, WaitNode) and n.event == name]
        if not waits:
            known = sorted({n.event for n in workflow.nodes if isinstance(n, WaitNode)})
            raise InputValidationError(
                f"workflow '{workflow.id}' never waits for event '{name}'; it waits for: {', '.join(known) or 'none'}"
            )
        target = waits[0] if len({w.codec.type for w in waits}) == 1 else await self._next_wait(row.id, name, waits)
        payload_json = _validated_json(target.codec, payload, f"event '{name}' for run {run_id} (at '{target.id}')")
        return await self._deliver(row, name, payload_json, event_id, "waiting")

    async def _next_wait(self, run_id: str, name: str, waits: list[WaitNode]) -> WaitNode:
        """The wait that will take the next event ``name``: waits take them in plan order, oldest first.

        Only asked when waits for one name differ in schema, so each payload is
        checked against the schema of the wait that will receive it.
        """
        consumed, pending = await inbox.event_uses(self._store, self.namespace, run_id, name)
        done = consumed | {
            s.step_key for s in await self._store.load_steps(self.namespace, run_id) if s.output is not None
        }
        open_waits = [w for w in waits if w.id not in done]
        return open_waits[min(pending, len(open_waits) - 1)] if open_waits else waits[-1]

    def approve(self, run_id: str, step_id: str, data: Any = None) -> bool:
        """Approve the approval step ``step_id`` of a run with ``data`` (validated by its schema)."""
        return self._loop.run(self._decide(run_id, step_id, True, data, None))

    async def aapprove(self, run_id: str, step_id: str, data: Any = None) -> bool:
        return await self._loop.run_async(self._decide(run_id, step_id, True, data, None))

    def reject(self, run_id: str, step_id: str, reason: str = "") -> bool:
        """Reject the approval step ``step_id`` of a run; its output has ``approved=False``."""
        return self._loop.run(self._decide(run_id, step_id, False, None, reason))

    async def areject(self, run_id: str, step_id: str, reason: str = "") -> bool:
        return await self._loop.run_async(self._decide(run_id, step_id, False, None, reason))

    async def _decide(self, run_id: str, step_id: str, approved: bool, data: Any, reason: str | None) -> bool:
        row, workflow = await self._run_and_workflow(run_id)
        step = workflow.find_step(step_id)
        if not isinstance(step, Step) or step.approval_codec is None:
            approvals = [t.id for t in workflow.iter_steps() if isinstance(t, Step) and t.approval_codec]
            raise InputValidationError(
                f"workflow '{workflow.id}' has no approval step '{step_id}'; its approvals: "
                f"{', '.join(approvals) or 'none'}"
            )
        value = None
        if approved and data is not None:
            value = validate_input(step.approval_codec, data, f"approval data for '{step_id}' of run {run_id}")
        decision = Approval[Any](approved=approved, data=value, reason=reason)
        payload_json = _validated_json(step.output_codec, decision, f"approval '{step_id}' for run {run_id}")
        wait = json.loads(row.wait_info or "{}")
        parked_here = row.status == "waiting" and wait.get("kind") == "approval" and wait.get("step_id") == step_id
        once = Decision(row.wait_info if parked_here else None, parked=False)
        what = f"approval '{step_id}' of run {run_id} was already decided; the first decision stands"
        return await self._deliver(row, approval_event(step_id), payload_json, None, "waiting", once, what)

    def resume(self, run_id: str, step_id: str, payload: Any = None) -> None:
        """Continue a run suspended in ``step_id``; the step reads ``payload`` as ``ctx.resume_data``."""
        self._loop.run(self._resume(run_id, step_id, payload))

    async def aresume(self, run_id: str, step_id: str, payload: Any = None) -> None:
        await self._loop.run_async(self._resume(run_id, step_id, payload))

    async def _resume(self, run_id: str, step_id: str, data: Any) -> None:
        row, workflow = await self._run_and_workflow(run_id)
        wait = json.loads(row.wait_info or "{}")
        if row.status != "suspended" or wait.get("step_id") != step_id:
            where = f" (suspended in '{wait.get('step_id')}')" if row.status == "suspended" else ""
            raise RunStateError(f"run {run_id} is {row.status}{where}, not suspended in step '{step_id}'")
        step = workflow.find_step(step_id)
        codec = step.resume_codec if isinstance(step, Step) and step.resume_codec else ANY
        payload_json = _validated_json(codec, data, f"resume data for step '{step_id}' of run {run_id}")
        once = Decision(row.wait_info, parked=True)
        what = f"run {run_id} was already resumed in step '{step_id}'; the first resume stands"
        await self._deliver(row, resume_event(wait["key"]), payload_json, None, "suspended", once, what)

    async def _run_and_workflow(self, run_id: str) -> tuple[RunRow, Workflow[Any, Any]]:
        row = await self._get_row(run_id)
        workflow = self._lookup(row.workflow_id, row.workflow_version)
        if workflow is None:
            raise WorkflowNotFound(
                f"run {run_id} uses workflow '{row.workflow_id}' version '{row.workflow_version}', not registered "
                "on this engine: register it so the payload can be validated"
            )
        return row, workflow

    async def _deliver(
        self,
        row: RunRow,
        name: str,
        payload_json: str,
        event_id: str | None,
        wakes: str,
        decision: Decision | None = None,
        decided: str = "",
    ) -> bool:
        """Store the event; with ``decision``, only while it is open, else RunStateError(``decided``)."""
        now = self.clock.now().timestamp()
        status, delivered = await self._store.send_event(
            self.namespace, row.id, name, payload_json, event_id, now, wakes, decision
        )
        if status is None:
            raise RunNotFound(f"no run {row.id!r} in namespace '{self.namespace}'")
        if status == "duplicate":
            return False
        if status == "decided":
            raise RunStateError(decided)
        if status in ("succeeded", "failed", "cancelled"):
            raise RunStateError(f"run {row.id} already {status}; events can only reach unfinished runs")
        self._worker.wake()
        return delivered


def _validated_json(codec: Codec[Any], value: Any, what: str) -> str:
    return codec.dump(validate_input(codec, value, what))
