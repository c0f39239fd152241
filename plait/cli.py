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


def main() -> None:
    try:
        app()
    except PlaitError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
