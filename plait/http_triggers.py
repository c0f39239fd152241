"""HTTP triggers as the engine declares them (``engine.http_trigger``): the request, signatures, delivery ids.

This module knows nothing of any web framework: ``plait.http`` mounts each
trigger as ``POST /hooks/<path>`` and calls these functions.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from plait.json_limits import UnsafeJson, parse_json

SignatureScheme = Literal["sha256", "timestamped"]
DEFAULT_SIGNATURE_HEADERS: dict[str, str] = {"sha256": "X-Hub-Signature-256", "timestamped": "X-Plait-Signature"}
# Headers in which senders name a delivery; a repeat of one starts nothing new.
DELIVERY_ID_HEADERS = ("x-github-delivery", "x-delivery-id")


@dataclass(frozen=True)
class TriggerRequest:
    """What an HTTP trigger's ``input_from`` and ``idempotency_key_from`` get (header names are lower case)."""

    path_params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON (``None`` when empty); raises ``ValueError`` for malformed, too deep or unstorable JSON."""
        return parse_json(self.body) if self.body else None


@dataclass(frozen=True)
class HttpTrigger:
    """One ``POST /hooks/<path>`` route that starts ``workflow`` (see ``Engine.http_trigger``)."""

    path: str
    workflow: Any
    input_from: Callable[[TriggerRequest], Any] | None
    idempotency_key_from: Callable[[TriggerRequest], str | None] | None
    secret: str | None
    signature_header: str
    signature: SignatureScheme = "sha256"
    max_age_seconds: float = 300.0


def signature_problem(trigger: HttpTrigger, headers: Mapping[str, str], body: bytes, now: float) -> str | None:
    """Why the request's signature is not valid for ``trigger`` (None when it is).

    ``sha256``: ``<header>: sha256=<hex HMAC-SHA256 of the body>``.
    ``timestamped``: ``<header>: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``
    (several ``v1`` allowed, for key rotation), refused once ``t`` is more than
    ``max_age_seconds`` away from ``now``.
    """
    assert trigger.secret is not None
    key = trigger.secret.encode()
    # Header values may hold any byte: compare bytes, so a non-ASCII value is a mismatch, not an error.
    given = headers.get(trigger.signature_header.lower(), "").encode("utf-8", "replace")
    if trigger.signature == "sha256":
        expected = b"sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest().encode()
        if hmac.compare_digest(given, expected):
            return None
        return f"the {trigger.signature_header} signature does not match the body"
    fields = _signature_fields(given)
    stamps = fields.get(b"t", [])
    if len(stamps) != 1 or not stamps[0].isdigit() or len(stamps[0]) > 12:
        return f"the {trigger.signature_header} header needs t=<unix seconds>,v1=<hex HMAC>"
    if abs(now - int(stamps[0])) > trigger.max_age_seconds:
        return (
            f"the {trigger.signature_header} timestamp is more than {trigger.max_age_seconds:g} s from now: "
            "sign each delivery when sending it (and check the sender's clock)"
        )
    expected = hmac.new(key, stamps[0] + b"." + body, hashlib.sha256).hexdigest().encode()
    if any(hmac.compare_digest(candidate, expected) for candidate in fields.get(b"v1", [])):
        return None
    return f"the {trigger.signature_header} signature does not match the timestamp and body"


def delivery_key(trigger: HttpTrigger, request: TriggerRequest) -> str | None:
    """The idempotency key of this delivery: a repeat of the same delivery returns the first run.

    In order: ``idempotency_key_from(request)``, the ``Idempotency-Key``
    header, the sender's delivery id (``X-GitHub-Delivery``,
    ``X-Delivery-Id``, the ``id`` of a Stripe event), and for timestamped
    signatures the signature itself (a replay inside the window repeats it).
    """
    if trigger.idempotency_key_from is not None:
        chosen = trigger.idempotency_key_from(request)
        if chosen:
            return chosen
    explicit = request.headers.get("idempotency-key")
    if explicit:
        return explicit
    scope = f"trigger:{trigger.path.strip('/')}"
    for header in DELIVERY_ID_HEADERS:
        if request.headers.get(header):
            return f"{scope}:{header}:{request.headers[header]}"
    if "stripe-signature" in request.headers:
        event_id = _json_id(request.body)
        if event_id:
            return f"{scope}:stripe:{event_id}"
    if trigger.secret is not None and trigger.signature == "timestamped":
        signed = request.headers.get(trigger.signature_header.lower(), "")
        return f"{scope}:signature:{hashlib.sha256(signed.encode('utf-8', 'replace')).hexdigest()}"
    return None


def _signature_fields(header: bytes) -> dict[bytes, list[bytes]]:
    fields: dict[bytes, list[bytes]] = {}
    for part in header.split(b","):
        name, _, value = part.strip().partition(b"=")
        fields.setdefault(name, []).append(value)
    return fields


def _json_id(body: bytes) -> str | None:
    try:
        value = parse_json(body)
    except UnsafeJson:
        return None
    event_id = value.get("id") if isinstance(value, dict) else None
    return event_id if isinstance(event_id, str) and event_id else None
