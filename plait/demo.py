"""``plait demo``: a realistic personal automation, run durably on a local SQLite file.

New sign-ups are read from a local CRM table; each is enriched in parallel
(company and time zone), gets a welcome email through a local SMTP sink,
waits a (simulated) day, and gets a follow-up. Nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
import os
import smtplib
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from pydantic import BaseModel

import plait

START = datetime(2030, 1, 6, 9, 0, tzinfo=UTC)
CRASH_GATE = "PLAIT_DEMO_CRASH_GATE"  # set by --crash: the child process blocks here and gets killed


class Signup(BaseModel):
    email: str
    name: str
    company_domain: str
    country: str


class Company(BaseModel):
    domain: str
    name: str
    employees: int


class Profile(BaseModel):
    signup: Signup
    company: Company
    timezone: str


class Email(BaseModel):
    to: str
    subject: str
    body: str


class Receipt(BaseModel):
    to: str
    message_id: str


class Summary(BaseModel):
    welcomed: int
    followed_up: int


def demo_dir() -> Path:
    return Path(os.environ.get("PLAIT_DEMO_DIR", "."))


def seed_crm(path: Path) -> None:
    """A small local CRM with new sign-ups (no network involved)."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS signups (email TEXT PRIMARY KEY, name TEXT, company_domain TEXT, "
            "country TEXT, welcomed INTEGER DEFAULT 0)"
        )
        conn.executemany(
            "INSERT OR IGNORE INTO signups (email, name, company_domain, country) VALUES (?, ?, ?, ?)",
            [
                ("ada@lovelace.dev", "Ada", "lovelace.dev", "GB"),
                ("grace@hopper.io", "Grace", "hopper.io", "US"),
                ("katherine@johnson.space", "Katherine", "johnson.space", "US"),
                ("hedy@lamarr.tech", "Hedy", "lamarr.tech", "AT"),
            ],
        )


@plait.step
def fetch_signups(ctx: plait.Context, batch: str) -> list[Signup]:
    """Read the sign-ups nobody has welcomed yet."""
    with sqlite3.connect(demo_dir() / "crm.db") as conn:
        rows = conn.execute("SELECT email, name, company_domain, country FROM signups WHERE welcomed = 0").fetchall()
    ctx.log.info("found %d new sign-ups", len(rows))
    return [Signup(email=e, name=n, company_domain=d, country=c) for e, n, d, c in rows]


@plait.step(retry=plait.Retry(max_attempts=3, initial=0.1))
def enrich_company(signup: Signup) -> Company:
    """Look the company up (a local stand-in for a data API)."""
    if os.environ.get(CRASH_GATE) and signup.name == "Grace":
        threading.Event().wait()  # the --crash demo kills this process here, mid-step
    size = 10 + sum(map(ord, signup.company_domain)) % 990
    return Company(domain=signup.company_domain, name=signup.company_domain.split(".")[0].title(), employees=size)


@plait.step
def enrich_timezone(signup: Signup) -> str:
    return {"GB": "Europe/London", "US": "America/New_York", "AT": "Europe/Vienna"}.get(signup.country, "UTC")


@plait.step
def write_welcome(profile: Profile) -> Email:
    """Compose the welcome email (an LLM call would go here)."""
    body = (
        f"Hi {profile.signup.name},\n\nwelcome aboard! We hope {profile.company.name} "
        f"({profile.company.employees} people) gets a lot out of it.\nWe will check in tomorrow, "
        f"{profile.timezone} time.\n"
    )
    return Email(to=profile.signup.email, subject="Welcome!", body=body)


def smtp_send(ctx: plait.Context, email: Email) -> Receipt:
    message = EmailMessage()
    message["From"] = "hello@plait.example"
    message["To"] = email.to
    message["Subject"] = email.subject
    # The idempotency key is the same on every re-run of this step: the sink keeps one copy per key.
    message["Message-ID"] = f"<{hashlib.sha256(ctx.idempotency_key.encode()).hexdigest()[:32]}@plait.demo>"
    message.set_content(email.body)
    with smtplib.SMTP("127.0.0.1", int(os.environ["PLAIT_DEMO_SMTP_PORT"]), timeout=10) as smtp:
        smtp.send_message(message)
    return Receipt(to=email.to, message_id=message["Message-ID"])


@plait.step
def send_welcome(ctx: plait.Context, email: Email) -> Receipt:
    return smtp_send(ctx, email)


@plait.step
def write_follow_up(receipt: Receipt) -> Email:
    return Email(to=receipt.to, subject="How is it going?", body="One day in: anything we can help with?\n")


@plait.step
def send_follow_up(ctx: plait.Context, email: Email) -> Receipt:
    return smtp_send(ctx, email)


@plait.step
def mark_welcomed(receipts: list[Receipt]) -> Summary:
    with sqlite3.connect(demo_dir() / "crm.db") as conn:
        conn.executemany("UPDATE signups SET welcomed = 1 WHERE email = ?", [(r.to,) for r in receipts])
    return Summary(welcomed=len(receipts), followed_up=len(receipts))


onboard_one = (
    plait.workflow("onboard_one", input=Signup, output=Receipt)
    .parallel(enrich_company, enrich_timezone)
    .map(lambda ctx, pair: Profile(signup=ctx.workflow_input, company=pair[0], timezone=pair[1]), id="profile")
    .then(write_welcome)
    .then(send_welcome)
    .sleep(timedelta(days=1), id="wait_a_day")
    .then(write_follow_up)
    .then(send_follow_up)
    .commit()
)

onboarding = (
    plait.workflow("onboarding", input=str, output=Summary)
    .then(fetch_signups)
    .foreach(onboard_one, concurrency=4)
    .then(mark_welcomed)
    .commit()
)


def crash_phase(directory: str, db_url: str) -> None:
    """The first process of ``plait demo --crash``: starts the batch, then hangs inside a step until killed."""
    from plait.testing import FakeClock

    os.environ["PLAIT_DEMO_DIR"] = directory
    with plait.Engine(db_url, clock=FakeClock(START)) as engine:
        engine.start(onboarding, "daily-signups", run_id="demo-batch")
        print("started", flush=True)
        threading.Event().wait()
