"""``plait worker``, ``workflows``, ``db`` and ``webhooks``: running and administering an engine."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

import plait
from plait.cli.common import (
    AppOption,
    DbOption,
    JsonOption,
    app,
    console,
    load_engine,
    log_runs,
    opened,
    opened_or_client,
    print_json,
    redact_url,
)
from plait.engine import Engine
from plait.errors import RunNotFound

RequiredApp = Annotated[str, typer.Option("--app", envvar="PLAIT_APP", help="package.module:engine to load")]


@app.command()
def version() -> None:
    """Print plait's version."""
    typer.echo(plait.__version__)


QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", envvar="PLAIT_QUIET", help="no line per run start and finish")
]


@app.command()
def worker(
    app_spec: RequiredApp,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", envvar="PLAIT_CONCURRENCY", min=1, help="runs at once")
    ] = 256,
    grace: Annotated[
        float, typer.Option("--grace", envvar="PLAIT_GRACE", min=0, help="seconds to drain on SIGTERM")
    ] = 30.0,
    db: DbOption = None,
    quiet: QuietOption = False,
) -> None:
    """Run a worker for the engine's workflows until SIGINT or SIGTERM.

    Logs one line per run start and finish (--quiet: warnings only). On
    SIGTERM it stops claiming, lets running runs reach a step boundary for
    up to --grace seconds, hands back the rest to other workers, and exits 0.
    """
    engine = load_engine(app_spec, db)
    log_runs(engine, quiet=quiet)
    typer.echo(
        f"plait worker on {redact_url(engine.url)} (namespace {engine.namespace}, concurrency {concurrency}); "
        "Ctrl-C to stop"
    )
    engine.work(concurrency=concurrency, grace=grace)


workflows_app = typer.Typer(help="The workflows an app registers.", no_args_is_help=True)
app.add_typer(workflows_app, name="workflows")


@workflows_app.command("list")
def workflows_list(app_spec: RequiredApp, as_json: JsonOption = False) -> None:
    """List the app's workflows with their versions and steps."""
    with opened(app_spec) as engine:
        flows = engine.workflows()
        if as_json:
            print_json([{"id": w.id, "version": w.version, "steps": [t.id for t in w.iter_steps()]} for w in flows])
            return
        table = Table("workflow", "version", "steps")
        for flow in flows:
            table.add_row(flow.id, flow.version, ", ".join(t.id for t in flow.iter_steps()))
        console.print(table)


@workflows_app.command("graph")
def workflows_graph(
    workflow_id: str,
    app_spec: RequiredApp,
    output_format: Annotated[str, typer.Option("--format", help="mermaid or json")] = "mermaid",
) -> None:
    """Print a workflow's plan as a Mermaid flowchart or JSON."""
    if output_format not in ("mermaid", "json"):
        raise typer.BadParameter("use mermaid or json", param_hint="--format")
    with opened(app_spec) as engine:
        flow = engine.get_workflow(workflow_id)
        typer.echo(flow.to_mermaid() if output_format == "mermaid" else flow.to_json())


db_app = typer.Typer(help="The database: migrations and retention.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Create or migrate plait's tables to the current schema (engines also do this at start)."""
    engine = Engine(db, worker=False)
    engine.close()
    typer.echo(f"schema is current on {redact_url(engine.url)}")


@db_app.command("prune")
def db_prune(
    older_than: Annotated[
        str, typer.Option("--older-than", envvar="PLAIT_PRUNE_OLDER_THAN", help="age like 30d, 12h or 90m")
    ] = "30d",
    older_than_days: Annotated[float | None, typer.Option("--older-than-days", min=0, hidden=True)] = None,
    db: DbOption = None,
) -> None:
    """Delete finished runs (with their steps and events) that ended longer ago than --older-than."""
    age = timedelta(days=older_than_days) if older_than_days is not None else parse_age(older_than)
    engine = Engine(db, worker=False)
    try:
        typer.echo(f"deleted {engine.prune(age)} runs")
    finally:
        engine.close()


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s`` or a plain number of days."""
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "d")
    try:
        return timedelta(**{units[unit]: float(number)})
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an age like 30d, 12h or 90m", param_hint="--older-than") from None


webhooks_app = typer.Typer(help="Signed webhooks of the event feed.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("add")
def webhooks_add(
    url: Annotated[str, typer.Argument(help="where to POST events")],
    secret: Annotated[
        str, typer.Option("--secret", envvar="PLAIT_WEBHOOK_SECRET", prompt=True, hide_input=True, help="HMAC key")
    ],
    event_type: Annotated[list[str] | None, typer.Option("--event-type", "-t", help="only these types")] = None,
    workflow: Annotated[list[str] | None, typer.Option("--workflow", "-w", help="only these workflows")] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help="'Name: value' sent with every delivery")
    ] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", min=0.1, help="seconds per delivery")] = None,
    app_spec: AppOption = None,
    db: DbOption = None,
) -> None:
    """Add a webhook; its secret is stored for signing and never shown again."""
    headers: dict[str, str] = {}
    for line in header or []:
        name, sep, value = line.partition(":")
        if not sep:
            raise typer.BadParameter(f"{line!r} is not 'Name: value'", param_hint="--header")
        headers[name.strip()] = value.strip()
    with opened_or_client(app_spec, db) as engine:
        hook = engine.add_webhook(
            url, secret, event_types=event_type, workflows=workflow, headers=headers or None, timeout=timeout
        )
        typer.echo(hook.id)


@webhooks_app.command("list")
def webhooks_list(app_spec: AppOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """List webhooks (id, url, filters, paused)."""
    with opened_or_client(app_spec, db) as engine:
        hooks = engine.webhooks()
        if as_json:
            print_json([hook.model_dump(mode="json") for hook in hooks])
            return
        for hook in hooks:
            filters = f"types={hook.event_types or 'all'} workflows={hook.workflows or 'all'}"
            typer.echo(f"{hook.id}\t{hook.url}\t{filters}{chr(9) + 'paused' if hook.paused else ''}")


def _on_webhook(app_spec: str | None, db: str | None, action: str, webhook_id: str) -> None:
    with opened_or_client(app_spec, db) as engine:
        if action == "remove":
            if not engine.remove_webhook(webhook_id):
                raise RunNotFound(f"no webhook {webhook_id!r}; see `plait webhooks list`")
        else:
            getattr(engine, f"{action}_webhook")(webhook_id)


@webhooks_app.command("remove")
def webhooks_remove(webhook_id: str, app_spec: AppOption = None, db: DbOption = None) -> None:
    """Remove a webhook."""
    _on_webhook(app_spec, db, "remove", webhook_id)


@webhooks_app.command("pause")
def webhooks_pause(webhook_id: str, app_spec: AppOption = None, db: DbOption = None) -> None:
    """Hold a webhook's deliveries; events wait (not dead-lettered) until `plait webhooks resume`."""
    _on_webhook(app_spec, db, "pause", webhook_id)


@webhooks_app.command("resume")
def webhooks_resume(webhook_id: str, app_spec: AppOption = None, db: DbOption = None) -> None:
    """Deliver again, starting with the events that waited."""
    _on_webhook(app_spec, db, "resume", webhook_id)


@webhooks_app.command("dead-letters")
def webhooks_dead_letters(app_spec: AppOption = None, db: DbOption = None) -> None:
    """List deliveries that failed every retry."""
    with opened_or_client(app_spec, db) as engine:
        for letter in engine.dead_letters():
            typer.echo(f"{letter.id}\t{letter.webhook_id}\tevent {letter.event_id}\t{letter.last_error}")


@webhooks_app.command("replay")
def webhooks_replay(app_spec: AppOption = None, db: DbOption = None) -> None:
    """Send every dead-lettered event again; prints how many went through."""
    with opened_or_client(app_spec, db) as engine:
        typer.echo(engine.replay_dead_letters())


schedules_app = typer.Typer(help="Cron schedules.", no_args_is_help=True)
app.add_typer(schedules_app, name="schedules")


@schedules_app.command("list")
def schedules_list(app_spec: AppOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """List schedules with their next due time."""
    with opened_or_client(app_spec, db) as engine:
        items = engine.schedules()
        if as_json:
            print_json([s.model_dump(mode="json") for s in items])
            return
        table = Table("schedule", "workflow", "cron", "time zone", "next", "paused")
        for item in items:
            table.add_row(
                item.id, item.workflow_id, item.cron, item.timezone, item.next_fire_at.isoformat(), str(item.paused)
            )
        console.print(table)


def _on_schedule(app_spec: str | None, action: str, schedule_id: str, db: str | None = None) -> None:
    # Only "trigger" needs the app's workflow code; the rest act on the stored schedule.
    with opened(app_spec, db=db) if app_spec else opened_or_client(None, db) as engine:
        if action == "remove":
            if not engine.remove_schedule(schedule_id):
                typer.echo(f"error: no schedule {schedule_id!r}", err=True)
                raise typer.Exit(2)
        elif action == "trigger":
            typer.echo(engine.trigger_schedule(schedule_id))
        else:
            getattr(engine, f"{action}_schedule")(schedule_id)


@schedules_app.command("pause")
def schedules_pause(schedule_id: str, app_spec: AppOption = None, db: DbOption = None) -> None:
    """Stop firing a schedule."""
    _on_schedule(app_spec, "pause", schedule_id, db)


@schedules_app.command("resume")
def schedules_resume(schedule_id: str, app_spec: AppOption = None, db: DbOption = None) -> None:
    """Fire a paused schedule again from its next due time."""
    _on_schedule(app_spec, "resume", schedule_id, db)


@schedules_app.command("remove")
def schedules_remove(schedule_id: str, app_spec: AppOption = None, db: DbOption = None) -> None:
    """Delete a schedule."""
    _on_schedule(app_spec, "remove", schedule_id, db)


@schedules_app.command("trigger")
def schedules_trigger(schedule_id: str, app_spec: RequiredApp, db: DbOption = None) -> None:
    """Start the schedule's workflow once, now; prints the run id."""
    _on_schedule(app_spec, "trigger", schedule_id, db)


@app.command("smtp")
def smtp(
    app_spec: RequiredApp,
    host: Annotated[str, typer.Option("--host", envvar="PLAIT_SMTP_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", envvar="PLAIT_SMTP_PORT")] = 2525,
    db: DbOption = None,
) -> None:
    """Receive email and start the workflows the app maps recipients to (engine.on_email)."""
    import threading

    from aiosmtpd.controller import Controller

    from plait.email import EmailTrigger

    engine = load_engine(app_spec, db)
    controller = Controller(EmailTrigger(engine), hostname=host, port=port)
    controller.start()
    typer.echo(f"plait smtp on {host}:{port} for {', '.join(sorted(engine._email_routes)) or 'no addresses'}")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()
        engine.close()


@app.command("server")
def server(
    app_spec: RequiredApp,
    host: Annotated[str, typer.Option("--host", envvar="PLAIT_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", envvar="PLAIT_PORT")] = 8000,
    workers_in_process: Annotated[
        int, typer.Option("--workers-in-process", envvar="PLAIT_WORKERS_IN_PROCESS", min=0, help="0: API only")
    ] = 1,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            envvar="PLAIT_ALLOWED_HOSTS",
            help="a Host name clients use (api.example.com, *.example.com); loopback names always work",
        ),
    ] = None,
    header_timeout: Annotated[
        float | None,
        typer.Option("--header-timeout", envvar="PLAIT_HEADER_TIMEOUT", min=0.1, help="seconds (default 10)"),
    ] = None,
    body_timeout: Annotated[
        float | None,
        typer.Option("--body-timeout", envvar="PLAIT_BODY_TIMEOUT", min=0.1, help="seconds (default 30)"),
    ] = None,
    keep_alive_timeout: Annotated[
        float | None,
        typer.Option("--keep-alive-timeout", envvar="PLAIT_KEEP_ALIVE_TIMEOUT", min=1, help="seconds (default 5)"),
    ] = None,
    db: DbOption = None,
    quiet: QuietOption = False,
) -> None:
    """Serve the HTTP API (and, by default, a worker in the same process: one command runs everything).

    Without API tokens it serves on a loopback address only; once a token was
    ever created every request needs one, even after the last is revoked.
    Requests must name this server (a loopback name, the bound address or an
    --allowed-host) in Host. Slow clients are cut off: request headers must
    arrive within --header-timeout and a body within --body-timeout. Logs
    one line per run start and finish of its in-process worker (--quiet: warnings only).
    """
    import uvicorn

    from plait.http import create_app
    from plait.http.api import DEFAULT_BODY_TIMEOUT
    from plait.http.auth import is_loopback
    from plait.http.serving import DEFAULT_HEADER_TIMEOUT, DEFAULT_KEEP_ALIVE_TIMEOUT, server_config
    from plait.store import tokens as token_table

    engine = load_engine(app_spec, db)
    log_runs(engine, quiet=quiet)
    guarded = engine._loop.run(token_table.auth_required(engine._store))
    if not guarded and not (host == "localhost" or is_loopback(host)):
        engine.close()
        typer.echo(
            f"error [auth.missing]: refusing to serve on {host} without API tokens; "
            "create one with `plait tokens create --namespace NS --scope admin` or bind 127.0.0.1",
            err=True,
        )
        raise typer.Exit(2)
    if not guarded:
        typer.echo("no API tokens exist: serving on loopback only, without authentication")
    elif not engine._loop.run(token_table.any_active(engine._store)):
        typer.echo("every API token is revoked: requests are refused until `plait tokens create` makes one")
    if workers_in_process:
        engine._ensure_started()
    typer.echo(f"plait API on http://{host}:{port}/api (docs: /api/docs) for {redact_url(engine.url)}")
    typer.echo(f"dashboard on http://{host}:{port}/")
    app = create_app(engine, allowed_hosts=allowed_host or (), body_timeout=body_timeout or DEFAULT_BODY_TIMEOUT)
    config = server_config(
        app,
        host,
        port,
        header_timeout=header_timeout or DEFAULT_HEADER_TIMEOUT,
        keep_alive_timeout=keep_alive_timeout or DEFAULT_KEEP_ALIVE_TIMEOUT,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        engine.close()


tokens_app = typer.Typer(help="API bearer tokens.", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")


@tokens_app.command("create")
def tokens_create(
    namespace: Annotated[str, typer.Option("--namespace", envvar="PLAIT_NAMESPACE")] = "default",
    scope: Annotated[str, typer.Option("--scope", help="read, write or admin")] = "read",
    db: DbOption = None,
) -> None:
    """Create a token; it is printed once and only its hash is stored."""
    from plait.store import tokens as token_table

    if scope not in token_table.SCOPES:
        raise typer.BadParameter("use read, write or admin", param_hint="--scope")
    engine = Engine(db, worker=False)
    try:
        row, value = engine._loop.run(token_table.create(engine._store, namespace, scope, time.time()))
        typer.echo(value)
        typer.echo(f"token {row.id}: namespace {namespace}, scope {scope} (shown once; store it now)", err=True)
    finally:
        engine.close()


@tokens_app.command("revoke")
def tokens_revoke(token_id: str, db: DbOption = None) -> None:
    """Revoke a token by its id (the part after plt_ and before the next _)."""
    from plait.store import tokens as token_table

    engine = Engine(db, worker=False)
    try:
        if not engine._loop.run(token_table.revoke(engine._store, token_id, time.time())):
            typer.echo(f"error: no active token {token_id!r}", err=True)
            raise typer.Exit(2)
    finally:
        engine.close()
