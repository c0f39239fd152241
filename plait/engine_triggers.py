"""Triggers that start runs: on another run's completion (``on_complete``), on email, on an HTTP request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from plait.clock import to_seconds
from plait.errors import InputValidationError, LeaseLost, StoreUnavailable
from plait.http_triggers import DEFAULT_SIGNATURE_HEADERS, HttpTrigger, SignatureScheme, TriggerRequest
from plait.new_runs import new_run_row
from plait.runs import Run
from plait.store.base import RunRow
from plait.workflow.graph import Workflow

if TYPE_CHECKING:
    from plait.clock import Clock
    from plait.store.base import Store

log = logging.getLogger("plait.triggers")

FINAL_STATUSES = ("succeeded", "failed")


@dataclass(frozen=True)
class CompletionTrigger:
    id: str
    source: str
    target: Workflow[Any, Any]
    statuses: tuple[str, ...]
    input_from: Callable[[Run], Any] | None


class TriggersMixin:
    """Part of ``Engine``: ``on_complete``."""

    # Provided by Engine.
    _store: Store
    namespace: str
    clock: Clock
    _triggers: list[CompletionTrigger]
    _email_routes: dict[str, Workflow[Any, Any]]
    _http_triggers: list[HttpTrigger]

    def register(self, *items: Any) -> None:
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
        follow-up is started durably, exactly once per source run: its
        idempotency key is the trigger's id and the source run's id.
        Register the trigger on every engine whose workers run ``source``.
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
        self._triggers.append(trigger)
        return trigger.id

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
        for trigger in self._triggers:
            if trigger.source != row.workflow_id or row.status not in trigger.statuses:
                continue
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
                    metadata=f'{{"triggered_by": "{row.id}", "trigger": "{trigger.id}"}}',
                )
            except (StoreUnavailable, LeaseLost, asyncio.CancelledError):
                raise  # the store failed: the run does not end now, it is retried with its follow-ups
            except BaseException:  # a bad input_from (or unstorable input) is the trigger's bug: never the run's
                log.exception("plait trigger %s could not start a run after %s", trigger.id, row.id)
                continue
            # A store failure raises: the run does not end now, it is retried with its follow-ups.
            await self._store.create_run(new)


__all__ = ["CompletionTrigger", "TriggersMixin"]
