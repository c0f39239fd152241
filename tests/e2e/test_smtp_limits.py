"""The SMTP handler in a real SMTP conversation: a message too big for a run's input is refused with 552."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

import plait
from plait.email import EmailTrigger, InboundEmail
from tests.e2e.servers import free_port


@plait.step
def subject_of(mail: InboundEmail) -> str:
    return mail.subject


inbox = plait.workflow("inbox", input=InboundEmail).then(subject_of).commit()


@pytest.fixture
def listener(db_url: str) -> Iterator[tuple[plait.Engine, int]]:
    with plait.Engine(db_url, max_payload_bytes=64 * 1024) as engine:
        engine.on_email("in@example.com", start=inbox)
        port = free_port()
        controller = Controller(EmailTrigger(engine), hostname="127.0.0.1", port=port)
        controller.start()
        yield engine, port
        controller.stop()


def message(text: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "ada@example.com", "in@example.com", "big"
    mail["Message-ID"] = "<big@example.com>"
    mail.set_content(text)
    return mail


def test_a_message_over_the_payload_limit_gets_552_and_starts_nothing(listener: tuple[plait.Engine, int]) -> None:
    engine, port = listener
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.send_message(message("x" * 100 * 1024))
        assert refused.value.smtp_code == 552
        error = refused.value.smtp_error
        reply = error.decode() if isinstance(error, bytes) else error
        assert "too big" in reply and "Error" not in reply and "InputValidationError" not in reply
        smtp.send_message(message("small enough"))
    assert [run.workflow_id for run in engine.list_runs().items] == ["inbox"]
