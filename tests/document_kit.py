"""Connectors and documents shared by the document tests."""

from __future__ import annotations

import threading
from typing import Annotated, Any

from pydantic import BaseModel, Field

import plait

SECRET = "xoxb-SECRET-7f3a9c"
CALLS: list[tuple[str, Any]] = []
_lock = threading.Lock()


def called(kind: str, value: Any) -> None:
    with _lock:
        CALLS.append((kind, value))


class EnrichParams(BaseModel):
    email: str


class Address(BaseModel):
    city: str


class Company(BaseModel):
    name: str
    score: int
    address: Address
    tags: list[str] = Field(default_factory=list)


class SlackParams(BaseModel):
    channel: str
    text: str
    token: Annotated[str, plait.Hidden("SLACK_TOKEN")]
    workspace: Annotated[str, plait.UserOnly()] = "main"


class Sent(BaseModel):
    channel: str
    text: str


class CountParams(BaseModel):
    count: int = Field(ge=0)
    label: str = ""


class Counted(BaseModel):
    total: int


@plait.connector(type="crm.enrich", description="Look up the company behind an email")
def enrich(params: EnrichParams) -> Company:
    called("enrich", params.email)
    domain = params.email.split("@")[-1]
    return Company(name=domain.split(".")[0].title(), score=80, address=Address(city="Paris"), tags=["b2b"])


@plait.connector(type="slack.send", description="Post to Slack")
def slack(ctx: plait.Context, params: SlackParams) -> Sent:
    assert params.token == SECRET, "the hidden token was not filled in"
    called("slack", params.text)
    ctx.log.info("sent to %s", params.channel)
    return Sent(channel=params.channel, text=params.text)


@plait.connector(type="math.count")
async def count(params: CountParams) -> Counted:
    called("count", params.count)
    return Counted(total=params.count + 1)


def registry(**kwargs: Any) -> plait.Registry:
    return plait.Registry(enrich, slack, count, **kwargs)


def lead_document(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "lead-notifier",
        "input": {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]},
        "vars": {"channel": "#sales"},
        "blocks": [
            {"id": "enrich", "type": "crm.enrich", "params": {"email": "{{input.email}}"}},
            {
                "id": "notify",
                "type": "slack.send",
                "params": {"channel": "{{vars.channel}}", "text": "Lead {{enrich.name}} in {{enrich.address.city}}"},
            },
        ],
        "output": {"company": "{{enrich.name}}", "score": "{{enrich.score}}", "sent": "{{notify.text}}"},
    }
    doc.update(changes)
    return doc
