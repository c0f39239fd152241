"""The worker: claims ready runs under a lease, executes them, and recovers crashed work."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

from plait.artifacts.storage import ArtifactStorage
from plait.clock import Clock, wall_seconds
from plait.errors import LeaseLost, RunCancelledSignal, RunNotFound, StoreUnavailable
from plait.executor import ParkSignal, RunExecution, describe_error
from plait.hooks import Observer
from plait.ids import is_owner_alive, process_owner
from plait.new_runs import new_run_row
from plait.run_log import public_error
from plait.store.base import Lease, RunRow, Store
from plait.tracing import Tracer
from plait.workflow.graph import Workflow

log = logging.getLogger("plait.worker")

# A run handed back after a store or internal error waits this long before it is claimed again.
RELEASE_BACKOFF_SECONDS = 5.0

WorkflowLookup = Callable[[str, str], "Workflow[Any, Any] | None"]


class Worker:
    """Executes runs in this process; every state change goes through the store.

    A run stays on the worker that holds it while it has work, so a sequential
    workflow costs about one transaction per step.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        namespace: str,
        lookup: WorkflowLookup,
        refs: Callable[[], list[str]],
        *,
        concurrency: int,
        lease_seconds: float,
        poll_interval: float,
        max_payload_bytes: int,
        before_claim: Callable[[], Awaitable[None]] | None = None,
        other_due: Callable[[], Awaitable[float | None]] | None = None,
    ) -> None:
        self.store = store
        self._before_claim = before_claim
        self._other_due = other_due  # when something besides runs is due (a schedule)
        self.clock = clock
        self.namespace = namespace
        self.max_payload_bytes = max_payload_bytes
        self.host = socket.gethostname()
        self.owner = process_owner(self.host)
        self._lookup = lookup
        self._refs = refs
        self._concurrency = concurrency
        self._lease_seconds = lease_seconds
        self._poll_interval = poll_interval
        self._active: dict[str, tuple[asyncio.Task[None], RunExecution | None]] = {}
        self._waiters: dict[str, list[asyncio.Future[RunRow]]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self.draining = False
        self.observers: list[Observer] = []
        self.tracer: Tracer | None = None
        self.artifacts = ArtifactStorage(store, None, namespace)  # the engine gives it its blob store
        self.before_finish: Callable[[RunRow], Awaitable[None]] | None = None
        self._claims_in_flight = 0
        self._loops: list[asyncio.Task[None]] = []

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        self.store.on_wakeup(self.wake)
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="plait-claim"),
            asyncio.create_task(self._heartbeat_loop(), name="plait-heartbeat"),
        ]

    def wake(self) -> None:
        self._wake.set()

    def set_concurrency(self, concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._concurrency = concurrency

    @property
    def has_capacity(self) -> bool:
        return not self._stopping and len(self._active) < self._concurrency

    def lease_until(self) -> float:
        return wall_seconds() + self._lease_seconds

    async def stop(self, grace: float = 0.0) -> None:
        """Stop claiming; let each running run finish its in-flight step, then hand it back.

        A step already running is finished and committed (for up to ``grace``
        seconds) and its run is handed back at that step boundary, so another
        worker continues it and no step that committed runs again. What still
        runs when ``grace`` ends is cancelled and handed back (it runs again
        elsewhere, as after a crash).
        """
        self._stopping = True
        self.draining = True
        self._wake.set()
        claim_loop, *others = self._loops
        # The claim loop ends by itself at its next turn: a claim in flight adopts
        # what it took, and those runs are handed back before their first step.
        await asyncio.wait([claim_loop], timeout=max(grace, self._poll_interval))
        claim_loop.cancel()
        await asyncio.gather(claim_loop, return_exceptions=True)
        tasks = [task for task, _ in self._active.values()]
        if tasks and grace > 0:
            await asyncio.wait(tasks, timeout=grace)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for loop in others:
            loop.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    # -- claiming ------------------------------------------------------------

    async def _claim_loop(self) -> None:
        await self.recover_dead_owners()
        idle_polls = 0
        while not self._stopping:
            try:
                claimed = await self._claim_batch()
                if claimed:
                    idle_polls = 0
                    continue
                idle_polls += 1
                if idle_polls % 20 == 1:
                    await self.store.mark_waiting_for_version(
                        self.namespace, self._refs(), self.clock.now().timestamp() - 2 * self._poll_interval
                    )
                if idle_polls % 40 == 0:
                    await self.recover_dead_owners()
            except StoreUnavailable as exc:
                log.warning("plait worker %s: store unavailable, retrying: %s", self.owner, exc)
            await self._idle()

    async def _idle(self) -> None:
        """Sleep until woken, the next parked run is due, or the poll interval passes."""
        self._wake.clear()
        now = self.clock.now().timestamp()
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait())]
        try:
            due = await self.store.next_ready_at(self.namespace, now)
            other = await self._other_due() if self._other_due is not None else None
            due = min((d for d in (due, other) if d is not None), default=None)
        except StoreUnavailable:
            due = None
        if due is not None:
            waiters.append(asyncio.ensure_future(self.clock.sleep(due - now)))
        try:
            await asyncio.wait(waiters, timeout=self._poll_interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _claim_batch(self, limit: int | None = None) -> int:
        if self._stopping:  # claim nothing this process will not finish
            return 0
        capacity = self._concurrency - len(self._active)
        if limit is not None:
            capacity = min(capacity, limit)
        if capacity <= 0:
            return 0
        if self._before_claim is not None:
            await self._before_claim()
        now = self.clock.now().timestamp()
        wall = wall_seconds()
        async with self.claiming():
            rows = await self.store.claim_runs(
                self.namespace, self.owner, self._refs(), now, wall, wall + self._lease_seconds, min(capacity, 64)
            )
            for row in rows:
                self.adopt(row, fresh=False)
        return len(rows)

    @contextlib.asynccontextmanager
    async def claiming(self) -> AsyncIterator[None]:
        """Mark a claim in flight: the run is ours in the database but not yet in ``_active``."""
        self._claims_in_flight += 1
        try:
            yield
        finally:
            self._claims_in_flight -= 1

    async def recover_dead_owners(self) -> None:
        """Hand back at once the runs of processes on this host that no longer exist."""
        owners = await self.store.owners_on_host(self.namespace, self.host)
        dead = [o for o in owners if o != self.owner and is_owner_alive(o, self.host) is False]
        if dead:
            count = await self.store.release_owners(self.namespace, dead)
            log.info("plait worker %s: recovered %d runs of dead processes %s", self.owner, count, dead)

    async def _heartbeat_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self._lease_seconds / 3)
            try:
                cancelled = await self.store.heartbeat(self.owner, list(self._active), self.lease_until())
            except StoreUnavailable as exc:
                log.warning("plait worker %s: heartbeat failed: %s", self.owner, exc)
                continue
            self.cancel_local(cancelled)

    # -- executing -----------------------------------------------------------

    def adopt(self, row: RunRow, *, fresh: bool) -> None:
        """Execute a run this worker now holds; ``fresh`` means it has no steps yet."""
        if row.id in self._active:
            return
        task = asyncio.create_task(self._execute(row, fresh), name=f"plait-run-{row.id}")
        self._active[row.id] = (task, None)
        self.store.set_concurrency_hint(len(self._active))

    def cancel_local(self, run_ids: list[str]) -> None:
        for run_id in run_ids:
            entry = self._active.get(run_id)
            if entry is None:
                continue
            task, execution = entry
            if execution is not None:
                execution.mark_cancelled()
            task.cancel()

    async def _execute(self, row: RunRow, fresh: bool) -> None:
        lease = Lease(row.id, row.lease_token)
        final: RunRow | None = None
        execution: RunExecution | None = None
        try:
            workflow = self._lookup(row.workflow_id, row.workflow_version)
            if workflow is None:  # unregistered since the claim: let a worker that has it take over
                await self.store.release_run(lease, self.clock.now().timestamp())
                return
            steps = [] if fresh else await self.store.load_steps(row.id)
            waits = [] if fresh else await self.store.load_waits(row.id)
            state = {} if fresh else await self._load_state(row.id)
            execution = RunExecution(self, row, workflow, steps, waits, state)
            self._active[row.id] = (self._active[row.id][0], execution)
            if execution.tracer is not None:
                execution.tracer.begin_run(execution.hook_info(), row.trace_context)
            if not steps and not waits:
                for observer in execution.observers:
                    await observer.run_started(execution.hook_info())
            status, output, error = await execution.execute()
            output_json = None
            if status == "succeeded":
                try:
                    output_json = workflow.output_codec.dump(output)
                except Exception as exc:  # noqa: BLE001 - an unstorable result fails the run, not the worker.
                    status, error = "failed", describe_error(exc)
            error_json = json.dumps(error) if error else None
            now = self.clock.now().timestamp()
            if self.before_finish is not None:
                # Follow-up runs are created (idempotently) before the run ends, so a crash in between
                # re-creates them, never loses them.
                ending = replace(row, status=status, output=output_json, error=error_json, finished_at=now)
                await self.before_finish(ending)
            async with execution.log.writing():
                events = [*execution.deferred_events, *execution.log.finish_events(status, output_json, error)]
                await self.store.finish_run(
                    lease, status, output_json, error_json, now, execution.deferred_step, events
                )
            final = replace(row, status=status, output=output_json, error=error_json, finished_at=now, owner=None)
            for observer in execution.observers:
                await observer.run_ended(execution.hook_info(status=status, output=output, error=public_error(error)))
        except ParkSignal as signal:
            assert execution is not None
            async with execution.log.writing():
                events = execution.log.park_events(signal.park)
                await self.store.park_run(lease, signal.park, self.clock.now().timestamp(), events)
        except RunCancelledSignal:
            final = await self.store.get_run(row.namespace, row.id)
        except LeaseLost as exc:
            log.warning("plait worker %s: %s", self.owner, exc)
        except asyncio.CancelledError:
            if self._stopping:
                await self._release_quietly(lease)
            else:
                final = await self.store.get_run(row.namespace, row.id)
        except StoreUnavailable as exc:
            log.error("plait worker %s: run %s paused, the store failed: %s", self.owner, row.id, exc)
            await self._release_quietly(lease, backoff=True)
        except Exception:
            log.exception("plait worker %s: run %s hit an internal error; handing it back", self.owner, row.id)
            await self._release_quietly(lease, backoff=True)
        finally:
            if execution is not None and execution.tracer is not None:
                execution.tracer.end_run(row.id, final.status if final is not None else "paused")
            was_full = len(self._active) >= self._concurrency
            self._active.pop(row.id, None)
            self.store.set_concurrency_hint(len(self._active))
            if final is not None and final.is_terminal:
                self._resolve_waiters(final)
            if was_full or row.parent_run_id is not None:  # room to claim more, or a parked parent to resume
                self._wake.set()

    async def _load_state(self, run_id: str) -> dict[str, Any]:
        """The run's workflow state: its committed ``state.set`` events, folded in order."""
        state: dict[str, Any] = {}
        after = 0
        while self.store.record_events:
            batch = await self.store.read_run_events(run_id, after, 1000)
            for event in batch:
                if event.type == "state.set" and event.payload:
                    state.update(json.loads(event.payload)["values"])
            if len(batch) < 1000:
                break
            after = batch[-1].seq
        return state

    async def _release_quietly(self, lease: Lease, *, backoff: bool = False) -> None:
        """Hand a run back; after an error, only after a pause, so a persistent fault cannot spin."""
        now = self.clock.now().timestamp()
        try:
            await self.store.release_run(lease, now, now + RELEASE_BACKOFF_SECONDS if backoff else None)
        except StoreUnavailable as exc:
            log.warning("plait worker %s: could not hand back run %s: %s", self.owner, lease.run_id, exc)

    async def run_child(
        self, parent: RunRow, step_key: str, child_run_id: str, workflow: Workflow[Any, Any], input_json: str
    ) -> RunRow:
        new = new_run_row(
            workflow,
            input_json,
            namespace=parent.namespace,
            now=self.clock.now().timestamp(),
            run_id=child_run_id,
            priority=parent.priority,
            parent_run_id=parent.id,
            parent_step_key=step_key,
            owner=None if self._stopping else self.owner,
            lease_expires_at=None if self._stopping else self.lease_until(),
            trace_context=self.tracer.context_of(parent.id) if self.tracer is not None else None,
        )
        row, created = await self.store.create_run(new)
        if row.is_terminal:
            return row
        if created and row.owner == self.owner:  # in a limited queue it is created pending, for a claim to take
            self.adopt(row, fresh=True)
        elif created:
            self.wake()
        local = self._active.get(row.id)
        if local is None:
            return row
        # Shielded: the child is its own run; cancelling the parent's task must not kill it.
        await asyncio.wait([asyncio.shield(local[0])])
        return await self.store.get_run(row.namespace, row.id) or row

    async def run_until_idle(self, timeout: float) -> None:
        """Return once this worker runs nothing and nothing it could run is due."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            now = self.clock.now().timestamp()
            other = await self._other_due() if self._other_due is not None else None
            if (
                not self._active
                and not self._claims_in_flight
                and (other is None or other > now)
                and not await self.store.has_ready_runs(self.namespace, self._refs(), now, wall_seconds())
            ):
                return
            if loop.time() > deadline:
                raise TimeoutError(f"work was still running or due after {timeout:g}s: {sorted(self._active)}")
            self._wake.set()
            await asyncio.sleep(0.002)

    async def process_ready(self, max_items: int, budget: float) -> tuple[int, bool]:
        """Claim and finish (or park) ready runs until ``max_items`` or ``budget`` seconds; for ``tick``.

        Returns how many runs were processed and whether ready work is left.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        processed = 0
        await self.recover_dead_owners()
        while processed < max_items and loop.time() < deadline:
            before = set(self._active)
            claimed = await self._claim_batch(limit=max_items - processed)
            tasks = [task for run_id, (task, _) in self._active.items() if run_id not in before]
            if not claimed and not tasks:
                break
            processed += claimed
            if tasks:
                await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
        now = self.clock.now().timestamp()
        more = await self.store.has_ready_runs(self.namespace, self._refs(), now, wall_seconds())
        return processed, more

    # -- waiting for results -------------------------------------------------

    def _resolve_waiters(self, row: RunRow) -> None:
        for future in self._waiters.pop(row.id, []):
            if not future.done():
                future.set_result(row)

    async def wait_for_terminal(self, namespace: str, run_id: str, timeout: float | None) -> RunRow:
        """The run's final row; waits for this worker to finish it, polling for other processes."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        poll = 0.05
        while True:
            try:
                row = await self.store.get_run(namespace, run_id)
            except StoreUnavailable as exc:  # an outage is not the run's failure: keep waiting
                log.warning("plait: waiting for run %s, the store is unavailable: %s", run_id, exc)
                await asyncio.sleep(poll)
                poll = min(poll * 1.5, 1.0)
                if deadline is not None and loop.time() > deadline:
                    raise
                continue
            if row is None:
                raise RunNotFound(f"no run {run_id!r} in namespace {namespace!r}")
            if row.is_terminal:
                return row
            wait = poll if deadline is None else min(poll, deadline - loop.time())
            if wait <= 0:
                raise TimeoutError(f"run {run_id} did not finish within {timeout:g}s (status {row.status})")
            future: asyncio.Future[RunRow] = loop.create_future()
            self._waiters.setdefault(run_id, []).append(future)
            try:
                return await asyncio.wait_for(future, wait)
            except TimeoutError:
                poll = min(poll * 1.5, 1.0)
            finally:
                waiters = self._waiters.get(run_id, [])
                if future in waiters:
                    waiters.remove(future)
