"""The worker: claims ready runs under a lease, executes them, and recovers crashed work."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

from plait.artifacts.storage import ArtifactStorage
from plait.clock import Clock, SystemClock, wall_seconds
from plait.errors import InternalError, LeaseLost, ResultTimeout, RunCancelledSignal, RunNotFound, StoreUnavailable
from plait.executor import ParkSignal, RunExecution
from plait.failures import describe_error, exception_text
from plait.hooks import Observer
from plait.ids import is_owner_alive, process_owner
from plait.new_runs import new_run_row
from plait.run_log import public_error
from plait.store.base import EventRow, Lease, NewEvent, RunRow, RunState, StepRow, Store
from plait.tracing import Tracer
from plait.workflow.graph import Workflow

# How often a thread waiting for a run's end looks whether the worker stopped meanwhile.
THREAD_WAIT_SLICE = 0.5

log = logging.getLogger("plait.worker")

# A run handed back after a store or internal error waits this long before it is claimed again.
RELEASE_BACKOFF_SECONDS = 5.0
# After this many internal errors on one run (counted since its last retry) the run fails with
# ``internal.error`` instead of being handed back again: a persistent fault must not loop forever.
MAX_INTERNAL_ERRORS = 3
# Each internal error is stored as a failed attempt of this pseudo-step, with its traceback.
INTERNAL_STEP = "$internal"
# On the real clock, runs due this soon are claimed (and their state read) ahead; each starts at its due
# time. 150 ms lets a few claims of CLAIM_BATCH (15-25 ms each on PostgreSQL) take 200 timers due together
# before they are due, so they start in one wave.
CLAIM_AHEAD_SECONDS = 0.15
# At most this many runs per claim: a burst of runs is shared by the workers claiming together, rather than
# taken whole by the first (a claim of 256 measured no better for timers than four of 64 claimed ahead).
CLAIM_BATCH = 64

WorkflowLookup = Callable[[str, str], "Workflow[Any, Any] | None"]


def fold_state(events: list[EventRow]) -> tuple[dict[str, Any], dict[str, int]]:
    """A run's workflow state (its ``state.set`` events, folded in order), and per step key the
    last attempt that recorded model usage: an attempt a crash cut short after a model call is
    counted, so the re-run is the next attempt (its usage records say so)."""
    state: dict[str, Any] = {}
    attempts: dict[str, int] = {}
    for event in events:
        if event.type == "state.set" and event.payload:
            state.update(json.loads(event.payload)["values"])
        if event.type == "step.usage" and event.step_key is not None and event.attempt is not None:
            attempts[event.step_key] = max(attempts.get(event.step_key, 0), event.attempt)
    return state, attempts


class EndWaiter:
    """A thread waiting for a run's end, and the final row the end hands it (None: ask the store)."""

    __slots__ = ("ended", "row")

    def __init__(self) -> None:
        self.ended = threading.Event()
        self.row: RunRow | None = None

    def end(self, row: RunRow | None) -> None:
        self.row = row
        self.ended.set()


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
        # Runs of ``_active`` whose code is done and whose end is being committed: they hold no slot.
        self._ending: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[RunRow]]] = {}
        # Threads blocked in ``wait_for_end`` on a run executing here: its end hands them its final row.
        self._thread_waiters: dict[str, list[EndWaiter]] = {}
        self._thread_waiters_lock = threading.Lock()
        self._wake = asyncio.Event()
        self._stopping = False
        self.draining = False
        self.observers: list[Observer] = []
        self.tracer: Tracer | None = None
        self.store_prompts = False  # Engine(store_prompts=True): keep prompts and responses with usage
        self.artifacts = ArtifactStorage(store, None, namespace)  # the engine gives it its blob store
        self.before_finish: Callable[[RunRow], Awaitable[None]] | None = None
        # Starts a run for ctx.start_child (the engine's: it validates, registers and creates runs).
        self.child_starter: Callable[[RunRow, str, Any, Any, str | None], Awaitable[Any]] | None = None
        self._claims_in_flight = 0
        self._loops: list[asyncio.Task[None]] = []
        self._hand_back_at: dict[str, float] = {}  # run id -> loop time after which execute() hands it back
        # Until when (clock seconds) the claim loop sleeps: a run parking until earlier wakes it.
        self._idle_until = -math.inf
        # A fake clock jumps rather than flows: claiming ahead of it would hold runs until the next jump.
        self._claim_ahead = CLAIM_AHEAD_SECONDS if isinstance(clock, SystemClock) else 0.0

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
        return not self._stopping and self._running < self._concurrency

    @property
    def executing(self) -> int:
        """How many runs this worker executes now (those whose end is committing included)."""
        return len(self._active)

    @property
    def _running(self) -> int:
        """How many runs hold a slot of ``concurrency``: those in flight here, but for those ending."""
        return len(self._active) - len(self._ending)

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
        idle_polls = 0
        recovered = False
        failures = 0
        while not self._stopping:
            try:
                if not recovered:
                    await self.recover_dead_owners()
                    recovered = True
                # Cleared before the claim counts free slots: a run finishing from here on wakes the next claim.
                self._wake.clear()
                claimed = await self._claim_batch(ahead=self._claim_ahead)
                failures = 0
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
                failures += 1
                log.warning("plait worker %s: store unavailable, retrying: %s", self.owner, exc)
            except Exception:  # this loop is the process's only claimer: it must outlive any one failure
                failures += 1
                log.exception("plait worker %s: claiming failed; retrying", self.owner)
            if failures:
                # Back off while the store fails (a full disk, an outage): fewer retries, less log.
                await asyncio.sleep(min(self._poll_interval * 2 ** min(failures, 8), RELEASE_BACKOFF_SECONDS))
            await self._idle()

    async def _idle(self) -> None:
        """Sleep until woken (since the last claim began), the next parked run is due, or the poll interval passes."""
        if self._stopping:
            return
        self._idle_until = math.inf  # a run parking from here on is due before whatever the reads below find
        now = self.clock.now().timestamp()
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait())]
        # One try from here: a shutdown that cancels us during the reads below must still cancel the
        # waiter, or the loop closes with it pending ("Task was destroyed but it is pending").
        try:
            try:
                due = await self.store.next_ready_at(self.namespace, now)
                other = await self._other_due() if self._other_due is not None else None
                due = min((d for d in (due, other) if d is not None), default=None)
            except StoreUnavailable:
                due = None
            if due is not None and self.has_capacity:  # when full, a finishing run wakes us
                # Wake ``_claim_ahead`` before it is due, unless that moment has passed: then the claim
                # ahead just took nothing (a limited queue), and the run is claimed once due.
                ahead = self._claim_ahead if due - now > self._claim_ahead else 0.0
                waiters.append(asyncio.ensure_future(self.clock.sleep(due - ahead - now)))
                self._idle_until = due - ahead
            elif self.has_capacity:
                self._idle_until = now + self._poll_interval
            await asyncio.wait(waiters, timeout=self._poll_interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._idle_until = -math.inf
            for waiter in waiters:
                waiter.cancel()

    async def _claim_batch(self, limit: int | None = None, *, ahead: float = 0.0) -> int:
        """Claim and start ready runs; with ``ahead``, also those due within ``ahead`` seconds (each starts
        at its due time, its claim and reads done)."""
        if self._stopping:  # claim nothing this process will not finish
            return 0
        capacity = self._concurrency - self._running
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
                self.namespace, self.owner, self._refs(), now, wall, wall + self._lease_seconds,
                min(capacity, CLAIM_BATCH), ready_by=now + ahead if ahead > 0 else None,
            )  # fmt: skip
            await self._adopt_claimed(rows)
        return len(rows)

    async def _adopt_claimed(self, rows: list[RunRow]) -> None:
        """Execute the runs of a claim, their states read together (not three reads per run)."""
        states: dict[str, RunState] = {}
        try:
            if rows:
                states = await self.store.load_run_states(self.namespace, [row.id for row in rows])
        except StoreUnavailable as exc:  # each run reads its own then, or hands itself back
            log.warning("plait worker %s: reading the claimed runs failed: %s", self.owner, exc)
        finally:  # even when cancelled (a shutdown): adopted, the runs are handed back, not left leased
            for row in rows:
                self.adopt(row, fresh=False, state=states.get(row.id))

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
            await self._beat()

    async def _beat(self) -> None:
        """Extend the leases of the runs in flight here, and stop those cancelled meanwhile."""
        try:
            cancelled = await self.store.heartbeat(self.namespace, self.owner, list(self._active), self.lease_until())
        except StoreUnavailable as exc:
            log.warning("plait worker %s: heartbeat failed: %s", self.owner, exc)
            return
        except Exception:  # a dead heartbeat would let every lease of this process expire
            log.exception("plait worker %s: heartbeat failed", self.owner)
            return
        self.cancel_local(cancelled)

    # -- executing -----------------------------------------------------------

    def adopt(self, row: RunRow, *, fresh: bool, state: RunState | None = None) -> None:
        """Execute a run this worker now holds; ``fresh`` means it has no steps yet.

        ``state`` is the run's stored state when the caller read it already (else the run reads it).
        """
        if row.id in self._active:
            return
        task = asyncio.create_task(self._execute(row, fresh, state), name=f"plait-run-{row.id}")
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

    async def _execute(self, row: RunRow, fresh: bool, stored: RunState | None = None) -> None:
        lease = Lease(row.id, row.lease_token, row.namespace)
        final: RunRow | None = None
        execution: RunExecution | None = None
        internal_errors = 0
        try:
            # Whoever adopted the run (start(), a claim) answers first: a run whose steps never await
            # anything would otherwise hold the loop, and keep start() from returning, until it ends.
            await asyncio.sleep(0)
            workflow = self._lookup(row.workflow_id, row.workflow_version)
            if workflow is None:  # unregistered since the claim: let a worker that has it take over
                await self.store.release_run(lease, self.clock.now().timestamp())
                return
            if stored is None and not fresh:
                stored = (await self.store.load_run_states(row.namespace, [row.id]))[row.id]
            steps, waits = (stored.steps, stored.waits) if stored is not None else ([], [])
            since = row.retried_at or 0.0
            internal_errors = sum(1 for s in steps if s.step_key == INTERNAL_STEP and s.finished_at >= since)
            state, attempts = fold_state(stored.events) if stored is not None else ({}, {})
            execution = RunExecution(self, row, workflow, steps, waits, state, attempts)
            execution.hand_back_after = self._hand_back_at.pop(row.id, None)
            self._active[row.id] = (self._active[row.id][0], execution)
            # Claimed ahead (on the real clock): nothing of the run starts before it is due.
            while (early := row.ready_at - self.clock.now().timestamp()) > 0:
                await self.clock.sleep(early)
            if execution.tracer is not None:
                execution.tracer.begin_run(execution.hook_info(), row.trace_context)
            if not steps and not waits:
                for observer in execution.observers:
                    await observer.run_started(execution.hook_info())
            status, output, error = await execution.execute()
            # Its code is done; committing its end must not keep the next runs waiting for its slot.
            self._end_slot(row.id)
            output_json = execution.output_json if status == "succeeded" else None
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
                    lease, status, output_json, error_json, now, execution.deferred_step, events,
                    execution.deferred_usage,
                )  # fmt: skip
            final = replace(row, status=status, output=output_json, error=error_json, finished_at=now, owner=None)
            for observer in execution.observers:
                await observer.run_ended(execution.hook_info(status=status, output=output, error=public_error(error)))
        except ParkSignal as signal:
            assert execution is not None
            async with execution.log.writing():
                events = execution.log.park_events(signal.park)
                await self.store.park_run(lease, signal.park, self.clock.now().timestamp(), events)
            if signal.park.ready_at < self._idle_until:  # due before the claim loop would look again
                self._wake.set()
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
        except Exception as exc:  # noqa: BLE001 - plait's own bug: stored on the run, never a silent loop
            final = await self._internal_error(row, lease, exc, internal_errors + 1)
        finally:
            if execution is not None and execution.tracer is not None:
                execution.tracer.end_run(row.id, final.status if final is not None else "paused")
            was_full = self._running >= self._concurrency and row.id not in self._ending
            self._active.pop(row.id, None)
            self._ending.discard(row.id)
            self.store.set_concurrency_hint(len(self._active))
            if final is not None and final.is_terminal:
                self._resolve_waiters(final)
            with self._thread_waiters_lock:
                woken = self._thread_waiters.pop(row.id, [])
            for waiter in woken:
                waiter.end(final if final is not None and final.is_terminal else None)
            if was_full or row.parent_run_id is not None:  # room to claim more, or a parked parent to resume
                self._wake.set()

    def _end_slot(self, run_id: str) -> None:
        """Free the slot of a run whose code is done (while its end commits); wake the claim loop if full.

        At most ``concurrency`` runs end this way at once: a store slow to commit cannot make the
        worker take on ever more runs.
        """
        if len(self._ending) >= self._concurrency:
            return
        if self._running >= self._concurrency:
            self._wake.set()
        self._ending.add(run_id)

    async def _internal_error(self, row: RunRow, lease: Lease, exc: Exception, count: int) -> RunRow | None:
        """Store an internal error on the run; hand it back, or fail it after ``MAX_INTERNAL_ERRORS``.

        Returns the final row when the run was failed.
        """
        giving_up = count >= MAX_INTERNAL_ERRORS
        log.error(
            "plait worker %s: run %s hit an internal error (%d of %d); %s",
            self.owner, row.id, count, MAX_INTERNAL_ERRORS, "failing it" if giving_up else "handing it back",
            exc_info=exc,
        )  # fmt: skip
        failure = InternalError(
            f"plait failed on run {row.id} {count} time(s) ({type(exc).__name__}: {exception_text(exc)[:500]}); "
            + (
                "the run was failed rather than retried forever. Please report this error with its traceback; "
                f"engine.retry({row.id!r}) tries again"
                if giving_up
                else "the run was handed back and will be tried again"
            )
        )
        error = describe_error(failure, INTERNAL_STEP, count)
        error["traceback"] = describe_error(exc)["traceback"]
        error_json = json.dumps(error)
        now = self.clock.now().timestamp()
        attempt = StepRow(row.id, INTERNAL_STEP, INTERNAL_STEP, count, "failed", None, None, error_json, now, now)
        try:
            if not giving_up:
                await self.store.record_step(lease, attempt)
                await self._release_quietly(lease, backoff=True)
                return None
            ending = replace(row, status="failed", output=None, error=error_json, finished_at=now, owner=None)
            if self.before_finish is not None:
                try:
                    await self.before_finish(ending)
                except Exception:  # follow-ups must not keep a broken run alive
                    log.exception("plait worker %s: follow-ups of run %s failed", self.owner, row.id)
            payload = json.dumps({"error": public_error(error)})
            events = (
                [NewEvent(row.namespace, row.id, row.workflow_id, "run.failed", now, payload)]
                if self.store.record_events
                else []
            )
            await self.store.finish_run(lease, "failed", None, error_json, now, attempt, events)
            return ending
        except Exception as store_exc:  # noqa: BLE001 - the store failed too: hand back, try again later
            log.warning("plait worker %s: could not record the error of run %s: %s", self.owner, row.id, store_exc)
            await self._release_quietly(lease, backoff=True)
            return None

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

    async def execute_one(self, run_id: str, budget: float) -> bool:
        """Claim ``run_id`` if it is due and free, and run it until it parks or ends; for ``engine.execute``.

        After ``budget`` seconds it is handed back at the next step boundary.
        Returns whether this call ran it (False when not due, or held elsewhere).
        """
        loop = asyncio.get_running_loop()
        local = self._active.get(run_id)
        if local is None:
            if self._before_claim is not None:
                await self._before_claim()
            now = self.clock.now().timestamp()
            wall = wall_seconds()
            async with self.claiming():
                rows = await self.store.claim_runs(
                    self.namespace, self.owner, self._refs(), now, wall, wall + self._lease_seconds, 1, run_id=run_id
                )
                for row in rows:
                    self._hand_back_at[row.id] = loop.time() + budget
                await self._adopt_claimed(rows)
            local = self._active.get(run_id)
            if local is None:
                return False
        task = local[0]
        # Heartbeat here too: a client engine (worker=False) runs no heartbeat loop of its own.
        while not task.done():
            await asyncio.wait([task], timeout=self._lease_seconds / 3)
            if not task.done():
                await self._beat()
        return True

    async def start_child(self, parent: RunRow, step_key: str, workflow: Any, input: Any, key: str | None) -> Any:
        if self.child_starter is None:
            raise RuntimeError("this worker cannot start child runs: it was made without an engine")
        return await self.child_starter(parent, step_key, workflow, input, key)

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

    def wait_for_end(self, namespace: str, run_id: str, timeout: float | None) -> RunRow | None:
        """From a thread other than the loop's: the final row of a run executing here, handed over by its end.

        None when the run is not executing here, when its execution ends otherwise (parked, handed
        back, lease lost), when the worker stops, or after ``timeout`` seconds: the caller then asks
        the store. The run's end wakes the thread directly, with no trip through the loop after it,
        and nothing is kept for later callers (the store stays the only record).
        """
        if namespace != self.namespace:
            return None
        waiter = EndWaiter()
        with self._thread_waiters_lock:
            if run_id not in self._active:
                return None
            self._thread_waiters.setdefault(run_id, []).append(waiter)
        deadline = None if timeout is None else time.monotonic() + timeout
        # In slices, so that a worker that stops (an engine closed meanwhile) does not leave the thread waiting.
        while not waiter.ended.wait(
            THREAD_WAIT_SLICE if deadline is None else min(THREAD_WAIT_SLICE, deadline - time.monotonic())
        ):
            if self._stopping or (deadline is not None and time.monotonic() >= deadline):
                with self._thread_waiters_lock:  # a caller polling a long run must not pile up its waits
                    waiting = self._thread_waiters.get(run_id, [])
                    if waiter in waiting:
                        waiting.remove(waiter)
                    if not waiting:
                        self._thread_waiters.pop(run_id, None)
                return waiter.row
        return waiter.row

    async def wait_for_terminal(self, namespace: str, run_id: str, timeout: float | None) -> RunRow:
        """The run's final row; waits for this worker to finish it, polling for other processes."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        poll = 0.05
        while True:
            # A run this worker executes now is not final: its end resolves the waiter, no read needed.
            row: RunRow | None = None
            executing = namespace == self.namespace and run_id in self._active
            if not executing or (deadline is not None and loop.time() >= deadline):
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
            if wait <= 0 and row is None:
                continue  # time is up: read the run once more, for its final row or its status
            if wait <= 0:
                assert row is not None
                raise ResultTimeout(
                    f"run {run_id} did not finish within {timeout:g}s (status {row.status}); it goes on: "
                    "wait longer, or check on it later with engine.get_run",
                    run_id=run_id,
                )
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
