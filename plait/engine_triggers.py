"""Triggers that start runs: on another run's completion (``on_complete``), on email, on an HTTP request."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from plait.clock import to_seconds
from plait.errors import InputValidationError, LeaseLost, StoreUnavailable
from plait.http_triggers import DEFAULT_SIGNATURE_HEADERS, HttpTrigger, SignatureScheme, TriggerRequest
from plait.new_runs import new_run_row
from plait.runs import Run
from plait.store import triggers as table
from plait.store.base import RunRow
from plait.workflow.graph import Workflow

if TYPE_CHECKING:
    from plait.clock import Clock
    from plait.loop_thread import LoopThread
    from plait.store.base import RunRow, Store
    from plait.worker import Worker

log = logging.getLogger("plait.triggers")

FINAL_STATUSES = ("succeeded", "failed")


@dataclass(frozen=True)
class CompletionTrigger:
    id: str
    source: str
    target: Workflow[Any, Any]
    statuses: tuple[str, ...]
    input_from: Callable[[Run], Any] | None


class Trigger(BaseModel):
    """A stored completion trigger: a run of ``source_workflow_id`` ending in ``statuses`` starts the target."""

    id: str
    source_workflow_id: str
    target_workflow_id: str
    statuses: list[str]
    has_input_from: bool
    created_at: datetime

    @classmethod
    def from_row(cls, row: table.TriggerRow) -> Trigger:
        return cls(
            id=row.id,
            source_workflow_id=row.source_workflow_id,
            target_workflow_id=row.target_workflow_id,
            statuses=list(row.statuses),
            has_input_from=row.has_input_from,
            created_at=datetime.fromtimestamp(row.created_at, UTC),
        )


class TriggersMixin:
    """Part of ``Engine``: ``on_complete``."""

    # Provided by Engine.
    _loop: LoopThread
    _store: Store
    _worker: Worker
    namespace: str
    clock: Clock
    _triggers: list[CompletionTrigger]
    _email_routes: dict[str, Workflow[Any, Any]]
    _http_triggers: list[HttpTrigger]
    # The stored triggers' reads of runs ending at once, shared (made at the first run's end).
    _trigger_reads: table.SourceReads | None = None

    def register(self, *items: Any) -> None:
        raise NotImplementedError

    async def _announce(self, hook: Literal["run_created", "run_cancelled"], row: RunRow) -> None:
        raise NotImplementedError

    def get_workflow(self, workflow_id: str, version: str | None = None) -> Workflow[Any, Any]:
        raise NotImplementedError

    def on_complete(
        self,
        source: Workflow[Any, Any] | str,
        *,
        start: Workflow[Any, Any],
        statuses: Collection[str] = ("succeeded",),
        input_from: Callable[[Run], Any] | None = None,
        id: str | None = None,
    ) -> str:
        """When a run of ``source`` ends in one of ``statuses``, start ``start`` with ``input_from(run)``.

        Without ``input_from`` the source run's output is the input. The
        trigger is stored in the database, like a schedule, so every worker of
        the namespace fires it, also one whose process never called
        ``on_complete`` (it needs ``start`` registered). The follow-up is
        started durably, exactly once per source run: its idempotency key is
        the trigger's id and the source run's id. ``input_from`` is code, so
        only processes that declared the trigger can run it: a worker without
        it logs a warning and starts no follow-up, so declare such triggers in
        every worker's app. Declaring the same ``id``
        again replaces the stored definition; ``remove_trigger`` deletes it.
        """
        unknown = set(statuses) - set(FINAL_STATUSES)
        if unknown or not statuses:
            raise InputValidationError(f"on_complete statuses must be among {FINAL_STATUSES}, got {sorted(statuses)}")
        source_id = source.id if isinstance(source, Workflow) else source
        self.register(start)
        trigger = CompletionTrigger(
            id=id or f"{source_id}-to-{start.id}",
            source=source_id,
            target=start,
            statuses=tuple(statuses),
            input_from=input_from,
        )
        self._triggers = [known for known in self._triggers if known.id != trigger.id] + [trigger]
        row = table.TriggerRow(
            namespace=self.namespace,
            id=trigger.id,
            source_workflow_id=source_id,
            target_workflow_id=start.id,
            statuses=trigger.statuses,
            has_input_from=input_from is not None,
            created_at=self.clock.now().timestamp(),
        )
        self._loop.run(table.upsert(self._store, row))
        return trigger.id

    def triggers(self) -> list[Trigger]:
        """This namespace's stored completion triggers."""
        return [Trigger.from_row(row) for row in self._loop.run(table.listed(self._store, self.namespace))]

    def remove_trigger(self, trigger_id: str) -> bool:
        """Delete a completion trigger for every worker; False if there was none."""
        self._triggers = [known for known in self._triggers if known.id != trigger_id]
        return self._loop.run(table.remove(self._store, self.namespace, trigger_id))

    def on_email(self, address: str, *, start: Workflow[Any, Any]) -> None:
        """Start ``start`` with a ``plait.email.InboundEmail`` for each message to ``address``.

        Serve with ``plait smtp --app module:engine --port 2525``.
        """
        if "@" not in address:
            raise InputValidationError(f"on_email needs an email address, got {address!r}")
        self.register(start)
        self._email_routes[address.lower()] = start

    def http_trigger(
        self,
        path: str,
        workflow: Workflow[Any, Any],
        *,
        input_from: Callable[[TriggerRequest], Any] | None = None,
        idempotency_key_from: Callable[[TriggerRequest], str | None] | None = None,
        secret: str | None = None,
        signature: SignatureScheme = "sha256",
        signature_header: str | None = None,
        max_age: timedelta | float = timedelta(minutes=5),
    ) -> None:
        """Mount ``POST /hooks/<path>`` (``{name}`` path parameters allowed) in ``plait.http.create_app``.

        It answers ``202 {"run_id"}`` and starts the run in this engine's
        namespace; without ``secret`` the caller needs a write token of that
        namespace (another namespace's token gets 404). ``input_from(request)``
        builds the input (default: the JSON body). A repeated delivery returns
        the first run: the key is ``idempotency_key_from(request)``, else the
        Idempotency-Key header, else the sender's delivery id
        (X-GitHub-Delivery, X-Delivery-Id, a Stripe event's id).

        With ``secret`` the body must be signed. ``signature="sha256"`` (GitHub's
        scheme): ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``.
        ``signature="timestamped"`` (Stripe's scheme, replay-proof):
        ``X-Plait-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``,
        refused when ``t`` is more than ``max_age`` from now. ``signature_header``
        renames the header (``"Stripe-Signature"`` verifies Stripe's deliveries).
        """
        if signature not in DEFAULT_SIGNATURE_HEADERS:
            raise InputValidationError(f"signature must be 'sha256' or 'timestamped', got {signature!r}")
        window = to_seconds(max_age)
        if window <= 0:
            raise InputValidationError("max_age must be positive")
        self.register(workflow)
        self._http_triggers.append(
            HttpTrigger(
                path=path,
                workflow=workflow,
                input_from=input_from,
                idempotency_key_from=idempotency_key_from,
                secret=secret,
                signature_header=signature_header or DEFAULT_SIGNATURE_HEADERS[signature],
                signature=signature,
                max_age_seconds=window,
            )
        )

    async def _start_follow_ups(self, row: RunRow) -> None:
        declared = {trigger.id: trigger for trigger in self._triggers}
        if self._trigger_reads is None:
            self._trigger_reads = table.SourceReads(self._store, self.namespace)
        # Alone (no other run here can end meanwhile): read at once; else share a read with the others.
        alone = self._worker.executing <= 1
        for stored in await self._trigger_reads.for_source(row.workflow_id, alone=alone):
            if row.status not in stored.statuses:
                continue
            trigger = declared.get(stored.id)
            if trigger is None or trigger.target.id != stored.target_workflow_id:
                trigger = self._stored_trigger(stored)
                if trigger is None:
                    continue
            await self._start_follow_up(trigger, row)

    def _stored_trigger(self, stored: table.TriggerRow) -> CompletionTrigger | None:
        """The trigger as this process can fire it from its stored row, or None when it lacks a part."""
        if stored.has_input_from:
            log.warning(
                "plait trigger %s has an input_from this process never declared: declare engine.on_complete "
                "in every worker's app; no follow-up started here",
                stored.id,
            )
            return None
        try:
            target = self.get_workflow(stored.target_workflow_id)
        except Exception:  # noqa: BLE001 - a trigger whose target this worker lacks cannot start it
            log.warning(
                "plait trigger %s starts workflow '%s', which this worker has not registered; no follow-up started",
                stored.id,
                stored.target_workflow_id,
            )
            return None
        return CompletionTrigger(stored.id, stored.source_workflow_id, target, stored.statuses, None)

    async def _start_follow_up(self, trigger: CompletionTrigger, row: RunRow) -> None:
        try:
            snapshot = Run.from_row(row)
            value = trigger.input_from(snapshot) if trigger.input_from else snapshot.output
            target = trigger.target
            validated = target.input_codec.validate(value)
            new = new_run_row(
                target,
                target.input_codec.dump(validated),
                namespace=self.namespace,
                now=self.clock.now().timestamp(),
                value=validated,
                idempotency_key=f"on_complete:{trigger.id}:{row.id}",
                metadata=json.dumps({"triggered_by": row.id, "trigger": trigger.id}),
            )
        except (StoreUnavailable, LeaseLost, asyncio.CancelledError):
            raise  # the store failed: the run does not end now, it is retried with its follow-ups
        except BaseException:  # a bad input_from (or unstorable input) is the trigger's bug: never the run's
            log.exception("plait trigger %s could not start a run after %s", trigger.id, row.id)
            return
        # A store failure raises: the run does not end now, it is retried with its follow-ups.
        created, is_new = await self._store.create_run(new)
        if is_new:
            await self._announce("run_created", created)


__all__ = ["CompletionTrigger", "Trigger", "TriggersMixin"]
