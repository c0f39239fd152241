"""The ``plait`` command line."""

from __future__ import annotations

import importlib
import sys
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

import typer

import plait
from plait.engine import Engine
from plait.errors import PlaitError

app = typer.Typer(help="plait: typed, durable workflows.", no_args_is_help=True, add_completion=False)


def load_engine(spec: str) -> Engine:
    """Import ``package.module:attribute`` and return the Engine it names."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise typer.BadParameter("use --app package.module:engine", param_hint="--app")
    sys.path.insert(0, ".")
    try:
        engine = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise typer.BadParameter(f"cannot load {spec!r}: {exc}", param_hint="--app") from exc
    if not isinstance(engine, Engine):
        raise typer.BadParameter(f"{spec!r} is a {type(engine).__name__}, not a plait.Engine", param_hint="--app")
    return engine


AppOption = Annotated[str, typer.Option("--app", envvar="PLAIT_APP", help="package.module:engine to load")]


@app.command()
def version() -> None:
    """Print plait's version."""
    typer.echo(plait.__version__)


@app.command()
def worker(
    app_spec: AppOption,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", envvar="PLAIT_CONCURRENCY", min=1, help="runs at once")
    ] = 64,
    grace: Annotated[
        float, typer.Option("--grace", envvar="PLAIT_GRACE", min=0, help="seconds to drain on SIGTERM")
    ] = 30.0,
) -> None:
    """Run a worker for the engine's workflows until SIGINT or SIGTERM.

    On SIGTERM it stops claiming, lets running runs reach a step boundary for
    up to --grace seconds, hands back the rest to other workers, and exits 0.
    """
    engine = load_engine(app_spec)
    typer.echo(
        f"plait worker on {redact_url(engine.url)} (namespace {engine.namespace}, concurrency {concurrency}); "
        "Ctrl-C to stop"
    )
    engine.work(concurrency=concurrency, grace=grace)


def redact_url(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


@app.command("workflows")
def list_workflows(app_spec: AppOption) -> None:
    """List the engine's registered workflows and their versions."""
    engine = load_engine(app_spec)
    for workflow in engine.workflows():
        typer.echo(f"{workflow.id}\t{workflow.version}")
    engine.close()


webhooks_app = typer.Typer(help="Signed webhooks of the event feed.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("add")
def webhooks_add(
    app_spec: AppOption,
    url: Annotated[str, typer.Argument(help="where to POST events")],
    secret: Annotated[
        str, typer.Option("--secret", envvar="PLAIT_WEBHOOK_SECRET", prompt=True, hide_input=True, help="HMAC key")
    ],
    event_type: Annotated[list[str] | None, typer.Option("--event-type", "-t", help="only these types")] = None,
    workflow: Annotated[list[str] | None, typer.Option("--workflow", "-w", help="only these workflows")] = None,
) -> None:
    """Add a webhook; its secret is stored for signing and never shown again."""
    engine = load_engine(app_spec)
    try:
        hook = engine.add_webhook(url, secret, event_types=event_type, workflows=workflow)
        typer.echo(hook.id)
    finally:
        engine.close()


@webhooks_app.command("list")
def webhooks_list(app_spec: AppOption) -> None:
    """List webhooks (id, url, filters)."""
    engine = load_engine(app_spec)
    try:
        for hook in engine.webhooks():
            filters = f"types={hook.event_types or 'all'} workflows={hook.workflows or 'all'}"
            typer.echo(f"{hook.id}\t{hook.url}\t{filters}")
    finally:
        engine.close()


@webhooks_app.command("remove")
def webhooks_remove(app_spec: AppOption, webhook_id: str) -> None:
    """Remove a webhook."""
    engine = load_engine(app_spec)
    try:
        if not engine.remove_webhook(webhook_id):
            typer.echo(f"error: no webhook {webhook_id!r}", err=True)
            raise typer.Exit(2)
    finally:
        engine.close()


@webhooks_app.command("dead-letters")
def webhooks_dead_letters(app_spec: AppOption) -> None:
    """List deliveries that failed every retry."""
    engine = load_engine(app_spec)
    try:
        for letter in engine.dead_letters():
            typer.echo(f"{letter.id}\t{letter.webhook_id}\tevent {letter.event_id}\t{letter.last_error}")
    finally:
        engine.close()


@webhooks_app.command("replay")
def webhooks_replay(app_spec: AppOption) -> None:
    """Send every dead-lettered event again; prints how many went through."""
    engine = load_engine(app_spec)
    try:
        typer.echo(engine.replay_dead_letters())
    finally:
        engine.close()


def main() -> None:
    try:
        app()
    except PlaitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
