"""The plan's email campaign, in plait: typed steps, ``ctx.result_of``, an HTTP trigger and a cron trigger.

A campaign is started two ways: by a POST to ``/hooks/campaigns/<segment>`` (here through the app
in-process, as an HTTP client would) and every Monday at 09:00 in Paris by a stored schedule (here
fired once by hand). Each run picks the audience, writes the email once, sends it to every contact
and reports what went out, reading the written email back with ``ctx.result_of``.

    python examples/email_campaign.py
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
from pydantic import BaseModel

import plait
from plait.http import TriggerRequest, create_app

CONTACTS = {
    "trial": ["ada@example.com", "grace@example.com", "linus@example.com"],
    "churned": ["ken@example.com"],
}


class Campaign(BaseModel):
    segment: str
    subject: str


class Audience(BaseModel):
    segment: str
    emails: list[str]


class Email(BaseModel):
    subject: str
    body: str


class Delivery(BaseModel):
    to: str
    message_id: str


class Report(BaseModel):
    subject: str
    sent: int
    recipients: list[str]


@plait.step
def pick_audience(campaign: Campaign) -> Audience:
    return Audience(segment=campaign.segment, emails=CONTACTS.get(campaign.segment, []))


@plait.step
def write_email(ctx: plait.Context, audience: Audience) -> Email:
    campaign = Campaign.model_validate(ctx.workflow_input)
    return Email(subject=campaign.subject, body=f"Hello from plait, dear {audience.segment} user!")


@plait.step
def address(ctx: plait.Context, email: Email) -> list[str]:
    return ctx.result_of(pick_audience).emails


@plait.step(retry=plait.Retry(max_attempts=3, initial=0.1))
def send(ctx: plait.Context, to: str) -> Delivery:
    # ctx.idempotency_key is the same on every retry: a mail API dedupes on it.
    return Delivery(to=to, message_id=f"<{ctx.idempotency_key}@mail.example.com>")


@plait.step
def report(ctx: plait.Context, deliveries: list[Delivery]) -> Report:
    email = ctx.result_of(write_email)  # typed: an Email
    return Report(subject=email.subject, sent=len(deliveries), recipients=[d.to for d in deliveries])


campaign = (
    plait.workflow("email_campaign", input=Campaign, output=Report)
    .then(pick_audience)
    .then(write_email)
    .then(address)
    .foreach(send, concurrency=4)
    .then(report)
    .commit()
)


def from_request(request: TriggerRequest) -> Campaign:
    body = request.json() or {}
    return Campaign(segment=request.path_params["segment"], subject=str(body.get("subject", "News")))


def build_engine(url: str) -> plait.Engine:
    engine = plait.Engine(url)
    engine.register(campaign)
    engine.http_trigger("campaigns/{segment}", campaign, input_from=from_request)
    engine.schedule(
        campaign,
        cron="0 9 * * 1",
        timezone="Europe/Paris",
        input={"segment": "churned", "subject": "We miss you"},
        id="monday-win-back",
    )
    return engine


async def post_trigger(engine: plait.Engine) -> str:
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        answer = await client.post(
            "/hooks/campaigns/trial", json={"subject": "Your trial"}, headers={"Idempotency-Key": "launch-1"}
        )
        answer.raise_for_status()
        run_id: str = answer.json()["run_id"]
        return run_id


def main(directory: Path) -> None:
    with build_engine(f"sqlite:///{directory / 'campaign.db'}") as engine:
        by_http = engine.get_run(asyncio.run(post_trigger(engine)))
        print("http:", by_http.result(timeout=30).model_dump())
        (schedule,) = engine.schedules()
        print("cron: next", schedule.next_fire_at.isoformat())
        by_cron = engine.get_run(engine.trigger_schedule("monday-win-back"))
        print("cron:", by_cron.result(timeout=30).model_dump())


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
