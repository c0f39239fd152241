"""The contract both sides import: a spec holds types and a version, no code."""

from __future__ import annotations

from pydantic import BaseModel

import plait


class SendEmail(BaseModel):
    to: str
    subject: str


class Delivered(BaseModel):
    message_id: str
    worker_pid: int


send_email = plait.spec("send-email", input=SendEmail, output=Delivered, version="1")
