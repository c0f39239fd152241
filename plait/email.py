"""Email in and out: an SMTP listener that starts runs, and ``send_email`` for steps.

Inbound: ``engine.on_email("support@example.com", start=workflow)`` maps a
recipient to a workflow; ``plait smtp --app m:engine --port 2525`` listens and
starts one run per message with the parsed ``InboundEmail`` as input (the
Message-ID is the idempotency key, so a re-delivered message starts nothing
new). Unknown recipients get 550 and malformed messages 554; nothing starts.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, make_msgid, parseaddr
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from plait.errors import InputValidationError, PlaitError

if TYPE_CHECKING:
    from plait.engine import Engine


class Attachment(BaseModel):
    """An attachment's metadata (its bytes are not put into the run's input)."""

    filename: str | None
    content_type: str
    size: int


class InboundEmail(BaseModel):
    """A received message, as a workflow's input."""

    message_id: str
    sender: str
    to: list[str]
    subject: str
    text: str | None
    html: str | None
    attachments: list[Attachment]


class MalformedEmail(ValueError):
    """The message cannot be understood (no sender, no body)."""


def parse_email(raw: bytes, recipients: list[str]) -> InboundEmail:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    sender = parseaddr(str(message.get("From", "")))[1]
    if not sender or "@" not in sender:
        raise MalformedEmail("the message has no valid From address")
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    if text_part is None and html_part is None:
        raise MalformedEmail("the message has no text or HTML body")
    attachments = [
        Attachment(
            filename=part.get_filename(),
            content_type=part.get_content_type(),
            size=len(part.get_payload(decode=True) or b""),
        )
        for part in message.iter_attachments()
    ]
    to = [address for _, address in getaddresses([str(v) for v in message.get_all("To", [])])] or recipients
    return InboundEmail(
        message_id=str(message.get("Message-ID") or make_msgid()).strip(),
        sender=sender,
        to=to,
        subject=str(message.get("Subject", "")),
        text=text_part.get_content() if text_part is not None else None,
        html=html_part.get_content() if html_part is not None else None,
        attachments=attachments,
    )


class EmailTrigger:
    """The aiosmtpd handler: refuses unknown recipients, starts a run per accepted message."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() not in self._engine._email_routes:
            return f"550 5.1.1 <{address}>: no workflow receives mail for this address"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        try:
            email = parse_email(envelope.content, list(envelope.rcpt_tos))
        except (MalformedEmail, ValueError, LookupError) as exc:
            return f"554 5.6.0 malformed message: {_one_line(str(exc))}"
        # The text and HTML become the run's input (attachments only as metadata): over the
        # engine's payload limit the message is refused as too big, before anything starts.
        limit = self._engine._worker.max_payload_bytes
        if len(email.model_dump_json()) > limit:
            return f"552 5.3.4 message text too big: plait accepts at most {limit} bytes of text and HTML"
        for recipient in envelope.rcpt_tos:
            workflow = self._engine._email_routes[recipient.lower()]
            try:
                await asyncio.to_thread(
                    self._engine.start,
                    workflow,
                    email,
                    idempotency_key=f"email:{workflow.id}:{email.message_id}",
                    metadata={"email_to": recipient},
                )
            except InputValidationError as exc:
                return f"554 5.6.0 the message is not valid input for {recipient}: {_one_line(exc.message)}"
            except PlaitError as exc:  # the store is down: the sender keeps the message and retries
                return f"451 4.3.0 cannot accept mail now [{exc.code}]; try again later"
        return "250 OK: queued"


def _one_line(text: str) -> str:
    """``text`` fit for an SMTP reply: one line, short."""
    return " ".join(text.split())[:300]


def send_email(
    to: str | list[str],
    subject: str,
    text: str,
    *,
    sender: str,
    html: str | None = None,
    host: str = "127.0.0.1",
    port: int = 25,
    starttls: bool = False,
    use_ssl: bool = False,
    username: str | None = None,
    password: str | None = None,
    message_id: str | None = None,
    timeout: float = 30.0,
) -> str:
    """Send one email over SMTP (TLS with ``starttls`` or ``use_ssl``); returns its Message-ID.

    In a step pass ``message_id`` derived from ``ctx.idempotency_key``: a
    re-run of the step then sends a message the receiving side can dedupe.
    """
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join([to] if isinstance(to, str) else to)
    message["Subject"] = subject
    message["Message-ID"] = message_id or make_msgid()
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    context = ssl.create_default_context()
    client = (
        smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        if use_ssl
        else smtplib.SMTP(host, port, timeout=timeout)
    )
    with client as smtp:
        if starttls and not use_ssl:
            smtp.starttls(context=context)
        if username is not None:
            smtp.login(username, password or "")
        smtp.send_message(message)
    return str(message["Message-ID"])
