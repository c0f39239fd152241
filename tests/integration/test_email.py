"""Email triggers through a real SMTP conversation on 127.0.0.1, and send_email."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

import plait
from plait.email import EmailTrigger, InboundEmail, send_email


@plait.step
def triage(mail: InboundEmail) -> str:
    return f"{mail.sender}: {mail.subject} ({len(mail.attachments)} attachment)"


support = plait.workflow("support_inbox", input=InboundEmail).then(triage).commit()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def listener(engine: plait.Engine) -> Iterator[int]:
    engine.on_email("Support@Example.com", start=support)
    port = free_port()
    controller = Controller(EmailTrigger(engine), hostname="127.0.0.1", port=port)
    controller.start()
    yield port
    controller.stop()


def message(sender: str = "ada@example.com", message_id: str = "<m1@example.com>") -> EmailMessage:
    mail = EmailMessage()
    if sender:
        mail["From"] = sender
    mail["To"] = "support@example.com"
    mail["Subject"] = "Printer on fire"
    mail["Message-ID"] = message_id
    mail.set_content("It is on fire.")
    mail.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="photo.pdf")
    return mail


def test_a_message_starts_one_run_with_the_parsed_email(engine: plait.Engine, listener: int) -> None:
    with smtplib.SMTP("127.0.0.1", listener, timeout=10) as smtp:
        smtp.send_message(message())
        smtp.send_message(message())  # delivered twice: same Message-ID, one run
    runs = engine.list_runs(workflow="support_inbox").items
    assert len(runs) == 1
    assert engine.get_run(runs[0].id).result(timeout=10) == "ada@example.com: Printer on fire (1 attachment)"
    parsed = runs[0].input
    assert parsed["text"].strip() == "It is on fire." and parsed["attachments"][0]["filename"] == "photo.pdf"


def test_unknown_recipients_and_malformed_messages_are_refused(engine: plait.Engine, listener: int) -> None:
    with smtplib.SMTP("127.0.0.1", listener, timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            smtp.sendmail("ada@example.com", ["nobody@example.com"], message().as_bytes())
        assert refused.value.recipients["nobody@example.com"][0] == 550
        with pytest.raises(smtplib.SMTPDataError) as malformed:
            smtp.sendmail("x@example.com", ["support@example.com"], message(sender="").as_bytes())
        assert malformed.value.smtp_code == 554
    assert engine.list_runs(workflow="support_inbox").items == []


def test_send_email_reaches_an_smtp_server(engine: plait.Engine, listener: int) -> None:
    message_id = send_email(
        "support@example.com", "From a step", "hello", sender="bot@example.com", port=listener, message_id="<s1@x>"
    )
    assert message_id == "<s1@x>"
    (run,) = engine.list_runs(workflow="support_inbox").items
    assert engine.get_run(run.id).result(timeout=10) == "bot@example.com: From a step (0 attachment)"
