"""The Node engine's campaign, in plait: retries, hooks, a child run per contact and a completion trigger.

``drip_campaign`` loads the contacts and starts one ``deliver`` child run per contact (each its own
run, linked to its parent, retried on its own); the mail API here fails the first attempt for some
contacts, and ``plait.Retry`` sends again. Hooks count what happens. When a campaign succeeds, a
stored completion trigger starts ``campaign_summary`` with its output, in whichever worker finished it.

    python examples/drip_campaign.py
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from pydantic import BaseModel

import plait
from plait.hooks import Hook

FLAKY = {"grace@example.com"}  # the mail API refuses these once, then accepts
attempts: Counter[str] = Counter()
seen: Counter[str] = Counter()


class Contact(BaseModel):
    email: str
    name: str


class Sent(BaseModel):
    email: str
    attempt: int


class Outcome(BaseModel):
    campaign: str
    sent: list[Sent]


class Summary(BaseModel):
    line: str


@plait.step
def load_contacts(campaign: str) -> list[Contact]:
    return [
        Contact(email="ada@example.com", name="Ada"),
        Contact(email="grace@example.com", name="Grace"),
        Contact(email="linus@example.com", name="Linus"),
    ]


@plait.step(retry=plait.Retry(max_attempts=3, initial=0.05, jitter=0.0))
def send_email(ctx: plait.Context, contact: Contact) -> Sent:
    attempts[contact.email] += 1
    if contact.email in FLAKY and ctx.attempt == 1:
        raise ConnectionError(f"mail API busy for {contact.email}")
    return Sent(email=contact.email, attempt=ctx.attempt)


deliver = plait.workflow("deliver", input=Contact, output=Sent).then(send_email).commit()


@plait.step
def collect(ctx: plait.Context, sent: list[Sent]) -> Outcome:
    return Outcome(campaign=str(ctx.workflow_input), sent=sent)


drip = (
    plait.workflow("drip_campaign", input=str, output=Outcome)
    .then(load_contacts)
    .foreach(deliver, concurrency=3)  # a committed workflow as a step: one child run per contact
    .then(collect)
    .commit()
)


@plait.step
def summarize(outcome: Outcome) -> Summary:
    retried = [s.email for s in outcome.sent if s.attempt > 1]
    return Summary(line=f"{outcome.campaign}: {len(outcome.sent)} sent, retried {retried}")


summary = plait.workflow("campaign_summary", input=Outcome, output=Summary).then(summarize).commit()


def count(name: str) -> Hook:
    def hook(info: plait.HookInfo) -> None:
        seen[f"{name}:{info.workflow_id}"] += 1

    return hook


def main(directory: Path) -> None:
    with plait.Engine(f"sqlite:///{directory / 'drip.db'}") as engine:
        engine.register(drip, summary)
        engine.add_hooks(
            plait.Hooks(
                on_run_created=count("created"),
                after_run=count("finished"),
                on_step_error=count("step_error"),
            )
        )
        engine.on_complete(drip, start=summary)  # stored: any worker fires it, once per campaign run
        run = engine.start(drip, "spring-launch")
        outcome = run.result(timeout=60)
        print("sent:", [(s.email, s.attempt) for s in outcome.sent])
        engine.run_until_idle()
        (follow_up,) = engine.list_runs(workflow="campaign_summary").items
        print("summary:", engine.get_run(follow_up.id).result(timeout=30).line)
        children = [r for r in engine.list_runs(workflow="deliver", limit=10).items if r.parent_run_id == run.id]
        print("child runs:", len(children))
        print("hooks:", dict(sorted(seen.items())))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
