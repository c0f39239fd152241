"""``plait demo``: onboard four sign-ups durably, with a crash and a simulated day if asked."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from email import message_from_bytes
from pathlib import Path
from typing import Annotated, Any

import typer
from aiosmtpd.controller import Controller

from plait.cli.common import app, console
from plait.engine import Engine
from plait.runs import Event
from plait.testing import FakeClock


class Sink:
    """A local SMTP server that files each message once per Message-ID in ``outbox/``."""

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox
        outbox.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        message = message_from_bytes(envelope.content)
        name = "".join(c for c in str(message["Message-ID"]) if c.isalnum() or c in "-._")[:120]
        (self.outbox / f"{name}.eml").write_bytes(envelope.content)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Narrator:
    """Prints what the runs did, from the event log, after each phase."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._cursor: str | None = None

    def tell(self) -> None:
        while True:
            page = self._engine.events(self._cursor, limit=500)
            if not page.items:
                return
            self._cursor = page.cursor
            for event in page.items:
                show(event)


def show(event: Event) -> None:
    who = event.run_id.removeprefix("demo-batch.") if event.run_id != "demo-batch" else "batch"
    if event.type == "step.completed" and event.step_id in ("send_welcome", "send_follow_up"):
        console.print(f"  [green]✉[/]  {who}: {event.step_id.replace('_', ' ')} sent")
    elif event.type == "step.completed" and event.step_id in ("enrich_company", "enrich_timezone"):
        console.print(f"  [cyan]⚙[/]  {who}: {event.step_id.replace('_', ' ')} (in parallel)")
    elif event.type == "step.log":
        console.print(f"  [dim]{who}: {event.payload['message']}[/]")
    elif event.type == "timer.set":
        console.print(f"  [yellow]⏸[/]  {who}: sleeps until tomorrow, holding no worker")
    elif event.type == "run.resumed" and (event.payload or {}).get("after", {}).get("kind") is None:
        console.print(f"  [magenta]♻[/]  {who}: resumed by the new process")


@app.command("demo")
def demo(
    directory: Annotated[Path | None, typer.Option("--dir", help="where to keep the demo's files")] = None,
    crash: Annotated[bool, typer.Option("--crash", help="kill the process mid-step, then recover")] = False,
) -> None:
    """Onboard new sign-ups: enrich in parallel, email them, wait a (simulated) day, follow up."""
    from plait import demo as flows

    root = directory or Path(tempfile.mkdtemp(prefix="plait-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    os.environ["PLAIT_DEMO_DIR"] = str(root)
    db_url = f"sqlite:///{root / 'plait.db'}"
    flows.seed_crm(root / "crm.db")
    sink = Sink(root / "outbox")
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    os.environ["PLAIT_DEMO_SMTP_PORT"] = str(port)
    console.print(f"[bold]plait demo[/] in {root}")
    try:
        if crash:
            crash_first_process(str(root), db_url)
        clock = FakeClock(flows.START)
        with Engine(db_url, clock=clock) as engine:
            engine.register(flows.onboarding)
            narrator = Narrator(engine)
            run = engine.start(flows.onboarding, "daily-signups", run_id="demo-batch")
            started = time.monotonic()
            engine.run_until_idle()
            narrator.tell()
            console.print("[bold]⏩ skipping a day[/] (a fake clock: the real run would sleep 24 h in the database)")
            clock.advance(days=1)
            summary = run.result(timeout=60)
            engine.run_until_idle()
            narrator.tell()
            runs = engine.list_runs(limit=1000).items
            steps = sum(len(engine.get_run(r.id).steps()) for r in runs)
        emails = sorted((root / "outbox").glob("*.eml"))
        console.print(
            f"\n[bold green]done[/] in {time.monotonic() - started:.1f}s: {summary.welcomed} sign-ups welcomed "
            f"and followed up; {len(runs)} runs ({sum(r.status == 'succeeded' for r in runs)} succeeded), "
            f"{steps} step attempts checkpointed, {len(emails)} emails in the sink."
        )
        # soft_wrap: paths and the command stay on one line, so they can be copied whole.
        console.print(
            f"database: {root / 'plait.db'}   emails: {root / 'outbox'}   CRM: {root / 'crm.db'}", soft_wrap=True
        )
        console.print(f"look inside: plait runs show demo-batch --db {db_url}", soft_wrap=True)
    finally:
        controller.stop()


def crash_first_process(directory: str, db_url: str) -> None:
    """Start the batch in a child process, SIGKILL it in the middle of a step, and show what survived."""
    env = {**os.environ, "PLAIT_DEMO_CRASH_GATE": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", f"from plait.demo import crash_phase; crash_phase({directory!r}, {db_url!r})"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    child.stdout.readline()
    time.sleep(1.0)  # the child works until it hangs inside enrich_company for Grace
    os.kill(child.pid, signal.SIGKILL)
    child.communicate(timeout=10)
    console.print(f"[bold red]💥 killed[/] process {child.pid} in the middle of a step (SIGKILL)")
    console.print("[bold]♻ recovering[/]: a new process continues from the last checkpoint; nothing is redone")
