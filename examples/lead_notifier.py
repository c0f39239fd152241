"""A workflow document: enrich a lead, then notify sales with a hidden token.

The document is plain JSON (what an LLM edits with plait.apply_ops); the Slack
token is a hidden param: it comes from Engine(secrets=...) at each attempt and
is never stored, logged or shown.
"""

import sys
from typing import Annotated

from pydantic import BaseModel

import plait


class Lead(BaseModel):
    email: str


class EnrichParams(BaseModel):
    email: str


class Company(BaseModel):
    name: str
    score: int


class SlackParams(BaseModel):
    channel: str
    text: str
    token: Annotated[str, plait.Hidden("SLACK_TOKEN")]


class Sent(BaseModel):
    channel: str
    text: str


@plait.connector(type="crm.enrich", description="Look up the company behind an email address")
def enrich(params: EnrichParams) -> Company:
    domain = params.email.split("@")[-1]
    return Company(name=domain.split(".")[0].title(), score=80 if domain.endswith(".com") else 20)


@plait.connector(type="slack.send", description="Post a message to a Slack channel", retry=plait.Retry(3))
def slack(params: SlackParams) -> Sent:
    assert params.token.startswith("xoxb-")  # a real connector would call Slack with it
    return Sent(channel=params.channel, text=params.text)


DOCUMENT = {
    "id": "lead-notifier",
    "input": {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]},
    "vars": {"channel": "#sales"},
    "blocks": [
        {"id": "enrich", "type": "crm.enrich", "params": {"email": "{{input.email}}"}},
        {
            "id": "notify",
            "type": "slack.send",
            "params": {"channel": "{{vars.channel}}", "text": "New lead: {{enrich.name}} ({{input.email}})"},
            "when": {"ref": "{{enrich.score}}", "op": "gte", "value": 50},
        },
    ],
    "output": {"company": "{{enrich.name}}", "notified": "{{notify.text}}"},
}

if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "sqlite:///plait-documents.db"
    with plait.Engine(url, secrets={"SLACK_TOKEN": "xoxb-example"}) as engine:
        engine.register(enrich, slack)
        version = engine.save_document(DOCUMENT)
        run = engine.start("lead-notifier", {"email": "ada@example.com"})
        print(f"document version {version}: {run.result(timeout=30)}")
