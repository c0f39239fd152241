"""``plait run``, ``plait runs ...`` and ``plait events``: starting, watching and acting on runs."""

from __future__ import annotations

import enum
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic_core import to_jsonable_python
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from plait.cli.common import (
    AppOption,
    DbOption,
    JsonOption,
    app,
    console,
    opened,
    opened_or_client,
    print_json,
)
from plait.engine import Engine
from plait.errors import PlaitError, ResultTimeout
from plait.runs import Event, Run, RunHandle, RunStatus

progress_console = Console(stderr=True)


def parse_input(text: str) -> Any:
    """``--input``: JSON text, or ``@path`` to a JSON file."""
    try:
        raw = Path(text[1:]).read_text() if text.startswith("@") else text
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {text[1:]!r}: {exc.strerror}", param_hint="--input") from exc
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc


@app.command("run")
def run_workflow(
    workflow_id: Annotated[str, typer.Argument(help="the workflow to start")],
    app_spec: Annotated[str, typer.Option("--app", envvar="PLAIT_APP", help="package.module:engine")],
    input_text: Annotated[str, typer.Option("--input", "-i", help="JSON input, or @file.json")] = "null",
    wait: Annotated[bool, typer.Option("--wait", "-w", help="wait for the result, showing progress")] = False,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key", help="start at most once")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start a run of WORKFLOW; with --wait, show live progress and print its result.

    Without --wait the run is only enqueued: a worker (``plait worker``) runs it.
    With --wait --json the outcome is JSON whether the run succeeds or not (exit 1 when not).
    """
    value = parse_input(input_text)
    # Without --wait this process exits at once: it must not start steps it will not finish.
    with opened(app_spec, worker=wait, db=db) as engine:
        run = engine.start(workflow_id, value, idempotency_key=idempotency_key)
        if not wait:
            print_json({"run_id": run.id}) if as_json else typer.echo(run.id)
            return
        try:
            if not as_json and progress_console.is_terminal:
                follow_progress(engine, run)
            info = run.info()
            while not info.status.is_terminal:
                try:
                    run.result(timeout=3600)
                except ResultTimeout:
                    pass
                except PlaitError:  # it failed or was cancelled: report its final row, not the one read before
                    info = run.info()
                    break
                info = run.info()
        except KeyboardInterrupt:
            typer.echo(
                f"\nstopped waiting; run {run.id} is stored and continues once a worker runs it "
                f"(`plait worker --app {app_spec}`). Follow it with `plait events {run.id} --follow` "
                f"or `plait runs show {run.id}`",
                err=True,
            )
            raise typer.Exit(130) from None
        if info.status != RunStatus.SUCCEEDED:
            if as_json:
                print_json({"run_id": run.id, "status": info.status.value, "error": info.error})
                raise typer.Exit(1)
            run.result(timeout=0.01)  # raises RunFailed / RunCancelled: one line, exit code 1
        output = to_jsonable_python(run.result())
        info = run.info()
        if as_json:
            print_json({"run_id": run.id, "status": info.status.value, "output": output})
        else:
            typer.echo(json.dumps(output, indent=2))


class ProgressLine:
    """The live line of ``run --wait``: steps done, the current step, its progress and last log line, a clock.

    Rendered again at every refresh, so the clock ticks even while nothing happens.
    """

    def __init__(self, run_id: str, total: int) -> None:
        self.run_id = run_id
        self.total = total
        self.done: set[str] = set()
        self.current = "starting"
        self.progress = ""
        self.last_log = ""
        self.started = time.monotonic()

    def see(self, event: Event) -> None:
        payload = event.payload if isinstance(event.payload, dict) else {}
        if event.type == "step.started":
            self.current, self.progress = f"running {event.step_id}", ""
        elif event.type in ("step.completed", "step.skipped") and event.step_id:
            self.done.add(event.step_id)
            self.current, self.progress = f"finished {event.step_id}", ""
        elif event.type == "step.progress":
            fraction = payload.get("fraction")
            percent = f"{fraction * 100:.0f}%" if isinstance(fraction, (int, float)) else ""
            self.progress = " ".join(part for part in (percent, str(payload.get("message") or "")) if part)
        elif event.type == "step.log":
            self.last_log = str(payload.get("message", ""))[:120]
        elif event.type in ("run.waiting", "run.suspended"):
            self.current = f"{event.type.removeprefix('run.')} ({payload.get('kind', '')})"
        elif event.type.startswith("run.") and event.type not in ("run.created", "run.started", "run.resumed"):
            self.current = event.type.removeprefix("run.")

    def text(self) -> Text:
        elapsed = int(time.monotonic() - self.started)
        clock = f"{elapsed // 60}:{elapsed % 60:02d}"
        parts = [f"{self.run_id} {len(self.done)}/{self.total} steps", self.current]
        if self.progress:
            parts.append(self.progress)
        parts.append(clock)
        line = Text(" · ".join(parts))
        if self.last_log:
            line.append(f"\n  log: {self.last_log}", style="dim")
        return line

    def __rich__(self) -> Text:
        return self.text()


def follow_progress(engine: Engine, run: RunHandle[Any]) -> None:
    """A live line while the run goes: steps done / total, the current step, its progress, time elapsed."""
    flow = engine.get_workflow(run.info().workflow_id)
    line = ProgressLine(run.id, len(flow.nodes))
    with Live(line, console=progress_console, refresh_per_second=4, transient=False):
        for event in run.events():
            line.see(event)


class RunOrderChoice(enum.StrEnum):
    """The orders ``runs list --order`` takes (those of ``engine.list_runs``)."""

    newest = "-created"
    oldest = "created"
    finished = "-finished"


runs_app = typer.Typer(help="List, inspect and act on runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


def run_row(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "workflow": run.workflow_id,
        "status": run.status.value,
        "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


@runs_app.command("list")
def runs_list(
    app_spec: AppOption = None,
    db: DbOption = None,
    workflow: Annotated[str | None, typer.Option("--workflow", help="only this workflow")] = None,
    status: Annotated[
        list[str] | None, typer.Option("--status", help="pending, running, waiting, ... (repeat for several)")
    ] = None,
    order: Annotated[
        RunOrderChoice, typer.Option("--order", help="-created (newest first), created, or -finished")
    ] = RunOrderChoice.newest,
    parent: Annotated[str | None, typer.Option("--parent", help="only the child runs of this run")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 20,
    as_json: JsonOption = False,
) -> None:
    """Runs, newest first unless --order says otherwise."""
    with opened_or_client(app_spec, db) as engine:
        page = engine.list_runs(workflow=workflow, status=status or None, parent=parent, order=order.value, limit=limit)
        if as_json:
            print_json({"items": [run_row(r) for r in page.items], "next_cursor": page.next_cursor})
            return
        # The id column never shrinks: an id is copied into the next command. The rest fold to fit.
        table = Table(box=None, pad_edge=False)
        width = max((len(run.id) for run in page.items), default=3)
        table.add_column("run", no_wrap=True, min_width=width)
        table.add_column("workflow", overflow="fold")
        table.add_column("status", no_wrap=True)
        table.add_column("created", overflow="fold")
        for run in page.items:
            created = run.created_at.strftime("%Y-%m-%d %H:%M:%S")
            table.add_row(run.id, run.workflow_id, run.status.value, created)
        console.print(table)


@runs_app.command("show")
def runs_show(run_id: str, app_spec: AppOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """One run: its status, input, output or error, and every step attempt."""
    with opened_or_client(app_spec, db) as engine:
        handle = engine.get_run(run_id)
        info, steps = handle.info(), handle.steps()
        if as_json:
            print_json({"run": info.model_dump(mode="json"), "steps": [s.model_dump(mode="json") for s in steps]})
            return
        console.print(f"[bold]{info.id}[/]  {info.workflow_id}@{info.workflow_version}  [bold]{info.status.value}[/]")
        if info.error:
            console.print(f"error [{info.error.get('code')}]: {info.error.get('message')}")
        if info.wait:
            console.print(f"waiting: {json.dumps(info.wait)}")
        if info.cancel_reason:
            console.print(f"cancelled: {info.cancel_reason}")
        if info.config:
            console.print(f"config: {json.dumps(info.config)}")
        table = Table("step", "attempt", "status", "started", "ms")
        for step in steps:
            ms = (step.finished_at - step.started_at).total_seconds() * 1000
            table.add_row(step.key, str(step.attempt), step.status, step.started_at.isoformat(), f"{ms:.1f}")
        console.print(table)
        if info.status == RunStatus.SUCCEEDED:
            console.print_json(json.dumps(info.output, default=str))


@runs_app.command("cancel")
def runs_cancel(
    run_id: str,
    app_spec: AppOption = None,
    db: DbOption = None,
    reason: Annotated[str | None, typer.Option("--reason", help="why; stored on the run and in its event")] = None,
) -> None:
    """Cancel a run and its child runs."""
    with opened_or_client(app_spec, db) as engine:
        typer.echo("cancelled" if engine.cancel(run_id, reason=reason) else "already finished")


@runs_app.command("retry")
def runs_retry(run_id: str, app_spec: AppOption = None, db: DbOption = None) -> None:
    """Continue a failed run from its failed step (a worker picks it up)."""
    with opened_or_client(app_spec, db) as engine:
        typer.echo(engine.retry(run_id).id)


@runs_app.command("rerun")
def runs_rerun(
    run_id: str,
    from_step: Annotated[str, typer.Option("--from", help="the first step to run again")],
    app_spec: Annotated[str, typer.Option("--app", envvar="PLAIT_APP", help="package.module:engine")],
    db: DbOption = None,
) -> None:
    """Start a new run of the same input that reuses the outputs of the steps before --from."""
    with opened(app_spec, db=db) as engine:
        typer.echo(engine.rerun_from(run_id, from_step).id)


@app.command("events")
def events(
    run_id: str,
    app_spec: AppOption = None,
    db: DbOption = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep following until the run ends")] = False,
    as_json: JsonOption = False,
) -> None:
    """A run's event log, in order; with --follow, live until the run ends."""
    with opened_or_client(app_spec, db) as engine:
        for event in engine.get_run(run_id).events(follow=follow):
            typer.echo(event.model_dump_json() if as_json else describe(event))


def describe(event: Event) -> str:
    where = f" {event.step_key}" if event.step_key else ""
    payload = f" {json.dumps(event.payload, default=str)}" if event.payload is not None else ""
    return f"{event.seq:>4} {event.created_at.isoformat()} {event.type}{where}{payload}"
