"""The storage contract every backend implements; SQL lives only in backends."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from plait.errors import LeaseLost, RunCancelledSignal

if TYPE_CHECKING:
    from plait.queues import Queue

TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")
# Statuses a worker may claim once ready_at is due ("running" only when its lease expired). A
# suspended run is due only at its workflow's deadline (else FOREVER): claimed then, it times out.
CLAIMABLE_STATUSES = ("pending", "running", "waiting", "suspended")
# How long a step waits before asking again for a slot of its full queue.
SLOT_RETRY_SECONDS = 0.02
# ready_at of a run that waits with no deadline: only an event or a resume wakes it.
FOREVER = 1e18


@dataclass(frozen=True)
class RunRow:
    """One run as stored. Times are epoch seconds; payloads are JSON text."""

    id: str
    namespace: str
    workflow_id: str
    workflow_version: str
    status: str
    input: str
    output: str | None
    error: str | None
    idempotency_key: str | None
    priority: int
    metadata: str | None
    parent_run_id: str | None
    parent_step_key: str | None
    status_message: str | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    ready_at: float
    retried_at: float | None
    owner: str | None
    lease_token: int
    wait_info: str | None
    queue: str | None
    concurrency_key: str | None
    trace_context: str | None
    # AI usage: the run's committed totals and its own budget (JSON of plait.Budget), if any.
    usage_input_tokens: int = 0
    usage_output_tokens: int = 0
    usage_cost_nanos: int | None = None
    usage_calls: int = 0
    budget: str | None = None
    cancel_reason: str | None = None
    config: str | None = None  # settings per step id, JSON (see plait.step_config)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class ArtifactRow:
    """A named output of a step: its bytes inline (``data``) or at ``blob`` in the blob store."""

    run_id: str
    key: str
    step_id: str
    step_key: str
    kind: str  # "bytes" | "text" | "json": what ctx.artifacts.get hands back
    content_type: str
    size: int
    data: bytes | None
    blob: str | None
    created_at: float
    namespace: str = ""  # the run's namespace: run ids are unique per namespace only


@dataclass(frozen=True)
class StepRow:
    """One attempt of one step. ``output`` is set when the attempt resolved the step.

    ``artifacts`` are written in the same transaction as the row (never read back with it).
    """

    run_id: str
    step_key: str
    step_id: str
    attempt: int
    status: str
    input: str | None
    output: str | None
    error: str | None
    started_at: float
    finished_at: float
    artifacts: tuple[ArtifactRow, ...] = ()


@dataclass(frozen=True)
class NewEvent:
    """An event to append to a run's log, in the same transaction as the change it describes."""

    namespace: str
    run_id: str
    workflow_id: str
    type: str
    created_at: float
    payload: str | None = None
    step_id: str | None = None
    step_key: str | None = None
    attempt: int | None = None


@dataclass(frozen=True)
class NewUsage:
    """One model call's usage, written with the commit of the step attempt that made it."""

    namespace: str
    run_id: str
    workflow_id: str
    step_id: str
    step_key: str
    attempt: int
    seq: int  # the call's place among its attempt's calls
    model: str
    provider: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_nanos: int | None  # billionths of a US dollar: integers sum exactly, in any order
    cost_source: str
    price_version: str | None
    prompt: str | None
    response: str | None
    day: str  # the UTC date of created_at, for reports by day in portable SQL
    created_at: float


@dataclass(frozen=True)
class EventRow:
    """A stored event: ``seq`` orders a run's log without gaps; ``id`` is its place in the global feed."""

    id: int
    namespace: str
    run_id: str
    workflow_id: str
    seq: int
    type: str
    step_id: str | None
    step_key: str | None
    attempt: int | None
    payload: str | None
    created_at: float


@dataclass(frozen=True)
class WaitRow:
    """Why and until when a step of a parked run waits; kept so replays see the same deadline."""

    run_id: str
    step_key: str
    kind: str  # "sleep" | "event" | "poll" | "resume"
    wake_at: float | None
    deadline: float | None
    event_name: str | None
    state: str | None
    created_at: float


@dataclass(frozen=True)
class RunState:
    """What a worker reads to resume a run it holds: its step attempts (in order), its waits,
    and its ``state.set`` and ``step.usage`` events (in order; none when events are off)."""

    steps: list[StepRow]
    waits: list[WaitRow]
    events: list[EventRow]


# The event types a resumed run folds into its state (RunState.events).
STATE_EVENT_TYPES = ("state.set", "step.usage")


@dataclass(frozen=True)
class Park:
    """Park a run: no lease, no coroutine, just a row until ``ready_at`` or an event.

    ``status`` is "waiting" or "suspended". The run stays ready at once if it
    raced what it waits for: an event ``wake_on`` already in its inbox, or the
    child run ``wake_if_done`` already finished. ``clear_events`` drops used
    events of that name (a suspended step's previous resume data).
    """

    status: str
    ready_at: float
    wait: WaitRow | None
    wait_info: str
    wake_on: str | None = None
    wake_if_done: str | None = None
    clear_events: str | None = None


@dataclass(frozen=True)
class NewRun:
    """What ``create_run`` needs; ``owner`` set means the creator claims it at once."""

    id: str
    namespace: str
    workflow_id: str
    workflow_version: str
    input: str
    created_at: float
    ready_at: float
    idempotency_key: str | None = None
    priority: int = 0
    metadata: str | None = None
    parent_run_id: str | None = None
    parent_step_key: str | None = None
    owner: str | None = None
    lease_expires_at: float | None = None
    queue: str | None = None
    concurrency_key: str | None = None
    trace_context: str | None = None
    budget: str | None = None
    config: str | None = None


@dataclass(frozen=True)
class Decision:
    """Store an event only while the decision it carries (an approval, a resume) is open: the first caller wins.

    Open means no event of that name waits untaken in the run's inbox, and
    either the run still parks at ``wait_info`` (the wait the caller saw, in
    the status the event wakes) or, unless ``parked`` is required, no event
    of that name was ever taken (a decision sent before the run reaches it).
    """

    wait_info: str | None
    parked: bool


def is_decision_open(
    decision: Decision, status: str, wait_info: str | None, wakes: str, pending: bool, ever: bool
) -> bool:
    """Whether ``decision`` is still open, from the run's locked row and its inbox (see ``Decision``)."""
    if pending:
        return False
    if decision.wait_info is not None and status == wakes and wait_info == decision.wait_info:
        return True
    return not decision.parked and not ever


@dataclass(frozen=True)
class Lease:
    """Proof of holding a run: the fencing token must still match at commit.

    A run is named by its namespace and id together: two namespaces may each have a run "r1".
    """

    run_id: str
    token: int
    namespace: str


@dataclass(frozen=True)
class RunFilter:
    """Which runs a listing or count covers; ``order`` is "-created", "created" or "-finished"."""

    workflow_id: str | None = None
    status: str | None = None
    waiting_for_version: bool = False
    parent_run_id: str | None = None
    idempotency_key: str | None = None
    statuses: tuple[str, ...] = ()
    order: str = "-created"
    recipe: str | None = None  # the recipe id a plan recorded in the run's metadata


class Store(Protocol):
    """Durable state of runs and steps. Every method is one transaction."""

    record_events: bool

    async def migrate(self) -> None:
        """Bring the schema to the current version (safe when many processes start together)."""
        ...

    async def sql(self, query: str, params: Sequence[object] = (), *, write: bool = False) -> list[tuple[Any, ...]]:
        """Run one portable statement (``?`` placeholders) for the store's own helper modules."""
        ...

    async def close(self) -> None: ...

    def set_concurrency_hint(self, active_runs: int) -> None:
        """How many runs this process executes now: a backend may batch commits when several do."""
        ...

    def on_wakeup(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the store's loop) when another process makes work ready, if the backend can."""
        ...

    async def create_run(self, run: NewRun) -> tuple[RunRow, bool]:
        """Insert ``run``; an existing run of its namespace with the same id or idempotency key is returned instead.

        The flag says whether this call created it.
        """
        ...

    async def get_run(self, namespace: str, run_id: str) -> RunRow | None: ...

    async def list_runs(
        self, namespace: str, where: RunFilter, limit: int, after: tuple[float, str] | None
    ) -> list[RunRow]:
        """In ``where.order`` (newest first by default), keyset-paginated by (sort key, id)."""
        ...

    async def count_runs(self, namespace: str, where: RunFilter) -> int:
        """How many runs ``where`` covers."""
        ...

    async def claim_runs(
        self,
        namespace: str,
        owner: str,
        refs: list[str],
        now: float,
        wall_now: float,
        lease_until: float,
        limit: int,
        *,
        run_id: str | None = None,
        ready_by: float | None = None,
    ) -> list[RunRow]:
        """Lease up to ``limit`` ready runs whose ``workflow@version`` is in ``refs`` (only ``run_id`` if given).

        ``ready_by`` (later than ``now``) also takes runs that become ready by then, outside limited
        queues: the worker does the claim ahead and starts each run at its ``ready_at``.
        """
        ...

    async def load_run_states(self, namespace: str, run_ids: list[str]) -> dict[str, RunState]:
        """The ``RunState`` of each of ``run_ids``, read together (a worker resuming the runs it claimed)."""
        ...

    async def has_ready_runs(self, namespace: str, refs: list[str], now: float, wall_now: float) -> bool:
        """Whether any run of ``refs`` could be claimed now."""
        ...

    async def release_owners(self, namespace: str, owners: list[str]) -> int:
        """Hand back every run held by the given (dead) owners."""
        ...

    async def owners_on_host(self, namespace: str, host: str) -> list[str]: ...

    async def heartbeat(self, namespace: str, owner: str, run_ids: list[str], lease_until: float) -> list[str]:
        """Extend this owner's leases on ``run_ids``; returns which of them were cancelled meanwhile."""
        ...

    async def load_steps(self, namespace: str, run_id: str) -> list[StepRow]: ...

    async def record_step(
        self, lease: Lease, step: StepRow, events: Sequence[NewEvent] = (), usage: Sequence[NewUsage] = ()
    ) -> None:
        """Append a step attempt (its events, and its model calls' usage added to the run's totals).

        Raises LeaseLost or RunCancelledSignal if the lease is stale.
        """
        ...

    async def append_events(self, lease: Lease, events: Sequence[NewEvent]) -> None:
        """Append events of a running step (logs, progress), fenced like a step commit."""
        ...

    async def read_run_events(self, namespace: str, run_id: str, after_seq: int, limit: int) -> list[EventRow]:
        """A run's events with seq > ``after_seq``, in order."""
        ...

    async def events_head(self, namespace: str) -> str | None:
        """A cursor just past the namespace's latest committed event (None when there is none)."""
        ...

    async def read_events(self, namespace: str, cursor: str | None, limit: int) -> tuple[list[EventRow], str | None]:
        """The namespace's events after ``cursor`` in commit order, and the cursor after them.

        A cursor never skips an event that commits later (None means from the start).
        """
        ...

    async def finish_run(
        self,
        lease: Lease,
        status: str,
        output: str | None,
        error: str | None,
        now: float,
        last_step: StepRow | None,
        events: Sequence[NewEvent] = (),
        usage: Sequence[NewUsage] = (),
    ) -> None:
        """End the run (with its last step attempt and its usage in the same transaction); fenced like record_step."""
        ...

    async def release_run(self, lease: Lease, now: float, ready_at: float | None = None) -> None:
        """Give the run back to the queue without finishing it (claimable again from ``ready_at``)."""
        ...

    async def cancel_run(self, namespace: str, run_id: str, now: float, reason: str | None = None) -> list[str]:
        """Cancel the run and its unfinished descendants; returns the ids cancelled.

        ``reason`` is stored on each and carried by their ``run.cancelled`` events.
        """
        ...

    async def reopen_run(self, namespace: str, run_id: str, now: float) -> None:
        """Make a failed run (and its failed child runs) ready again, to continue from the failed step."""
        ...

    async def fork_run(self, run: NewRun, source_run_id: str, step_keys: list[str]) -> RunRow:
        """Create ``run`` with copies of the source run's (same namespace) resolved steps at ``step_keys``, atomically.

        Their usage is copied too, marked carried: the new run's totals start
        at it, while usage reports count each call once.
        """
        ...

    async def load_waits(self, namespace: str, run_id: str) -> list[WaitRow]: ...

    async def register_queues(self, queues: list[Queue]) -> None:
        """Store the queues' limits (the latest registration wins, for every worker)."""
        ...

    async def acquire_slot(
        self, queue: str, holder: str, run_id: str, now: float, wall_now: float, expires_at: float
    ) -> float | None:
        """Take a slot of a step queue: None when taken, else the seconds to wait before trying again."""
        ...

    async def release_slot(self, queue: str, holder: str) -> None: ...

    async def park_run(self, lease: Lease, park: Park, now: float, events: Sequence[NewEvent] = ()) -> None:
        """Release the run until ``park.ready_at`` (fenced), saving its wait row."""
        ...

    async def consume_event(
        self, lease: Lease, name: str, step_key: str, record: StepRow | None, events: Sequence[NewEvent] = ()
    ) -> str | None:
        """Take the oldest unconsumed event ``name`` (its payload), recording ``record`` with it as output."""
        ...

    async def peek_event(self, namespace: str, run_id: str, name: str) -> str | None:
        """The newest unconsumed event ``name``'s payload, left in place."""
        ...

    async def send_event(
        self,
        namespace: str,
        run_id: str,
        name: str,
        payload: str,
        event_id: str | None,
        now: float,
        wakes: str,
        decision: Decision | None = None,
    ) -> tuple[str | None, bool]:
        """Put an event in the run's inbox and wake the run if its status is ``wakes``.

        Returns (the run's status, or "duplicate" for a repeated ``event_id``,
        or "decided" when ``decision`` is no longer open, or None if the run is
        missing; whether the event was stored). Nothing is stored for a
        finished run, a repeated ``event_id`` or a closed decision; the check
        and the insert are one transaction under the run's lock.
        """
        ...

    async def next_ready_at(self, namespace: str, now: float) -> float | None:
        """When the next parked run is due (None if none)."""
        ...

    async def prune(self, namespace: str, finished_before: float, limit: int) -> int:
        """Delete up to ``limit`` runs that ended before then, with their steps, waits, inbox, events and usage."""
        ...

    async def mark_waiting_for_version(self, namespace: str, refs: list[str], ready_before: float) -> int:
        """Explain, on ready runs no registered workflow can execute, which version they need."""
        ...


def lifecycle(run: NewRun, type_: str, payload: dict[str, object] | None, at: float) -> NewEvent:
    """A run-level event of a run being created."""
    return NewEvent(run.namespace, run.id, run.workflow_id, type_, at, None if payload is None else json.dumps(payload))


def claim_events(row: RunRow, first_start: bool, wait_info: str | None, at: float) -> list[NewEvent]:
    """What a claim means for the log: the run started, or resumed (after a timer: the timer fired)."""
    if first_start:
        return [NewEvent(row.namespace, row.id, row.workflow_id, "run.started", at)]
    wait = json.loads(wait_info) if wait_info else None
    events = []
    if wait is not None and wait.get("kind") in ("sleep", "retry"):
        events.append(NewEvent(row.namespace, row.id, row.workflow_id, "timer.fired", at, json.dumps(wait)))
    payload = json.dumps({"after": wait}) if wait is not None else None
    events.append(NewEvent(row.namespace, row.id, row.workflow_id, "run.resumed", at, payload))
    return events


def event_values(event: NewEvent) -> tuple[object, ...]:
    """The INSERT parameters of an event, in EVENT_INSERT's order (namespace and run_id twice: once for its seq)."""
    return (
        event.namespace, event.run_id, event.workflow_id, event.namespace, event.run_id, event.type, event.step_id,
        event.step_key, event.attempt, event.payload, event.created_at,
    )  # fmt: skip


def stale_lease(lease: Lease, row: tuple[Any, ...] | None) -> BaseException:
    """Why a fenced write was refused, from the run's (status, lease_token): cancelled, or taken over."""
    if row is not None and row[0] == "cancelled":
        return RunCancelledSignal(lease.run_id)
    now_held = "" if row is None else f" (token now {row[1]}, status {row[0]})"
    return LeaseLost(
        f"run {lease.run_id}: this worker's lease (token {lease.token}) was taken over{now_held}; "
        "its result was discarded"
    )


USAGE_COLUMNS = (
    "namespace, run_id, workflow_id, step_id, step_key, attempt, seq, model, provider, input_tokens, output_tokens, "
    "cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_nanos, cost_source, price_version, prompt, "
    "response, day, created_at"
)


def usage_values(call: NewUsage) -> tuple[object, ...]:
    """The INSERT parameters of a usage row, in USAGE_COLUMNS' order."""
    return (
        call.namespace, call.run_id, call.workflow_id, call.step_id, call.step_key, call.attempt, call.seq, call.model,
        call.provider, call.input_tokens, call.output_tokens, call.cache_read_tokens, call.cache_write_tokens,
        call.reasoning_tokens, call.cost_nanos, call.cost_source, call.price_version, call.prompt, call.response,
        call.day, call.created_at,
    )  # fmt: skip


def usage_totals(usage: Sequence[NewUsage]) -> tuple[int, int, int | None, int]:
    """What ``usage`` adds to its run's totals: input and output tokens, known cost (None if none), calls."""
    costs = [call.cost_nanos for call in usage if call.cost_nanos is not None]
    return (
        sum(call.input_tokens for call in usage),
        sum(call.output_tokens for call in usage),
        sum(costs) if costs else None,
        len(usage),
    )
