"""What every ``plait`` command shares: the app, --app / --db, and output helpers."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.console import Console

from plait.engine import Engine

app = typer.Typer(help="plait: typed, durable workflows.", no_args_is_help=True, add_completion=False)
console = Console()


@dataclass
class State:
    debug: bool = False


state = State()


@app.callback()
def options(
    debug: Annotated[bool, typer.Option("--debug", envvar="PLAIT_DEBUG", help="show tracebacks")] = False,
) -> None:
    """plait: typed, durable workflows."""
    state.debug = debug


AppOption = Annotated[
    str | None, typer.Option("--app", envvar="PLAIT_APP", help="package.module:engine that registers your workflows")
]
DbOption = Annotated[
    str | None, typer.Option("--db", envvar="PLAIT_DATABASE_URL", help="database URL (default sqlite:///plait.db)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def load_engine(spec: str) -> Engine:
    """Import ``package.module:attribute`` and return the Engine it names."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise typer.BadParameter("use --app package.module:engine", param_hint="--app")
    sys.path.insert(0, os.getcwd())
    try:
        engine = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise typer.BadParameter(f"cannot load {spec!r}: {exc}", param_hint="--app") from exc
    if not isinstance(engine, Engine):
        raise typer.BadParameter(f"{spec!r} is a {type(engine).__name__}, not a plait.Engine", param_hint="--app")
    return engine


def open_engine(app_spec: str | None, db: str | None) -> Engine:
    """The app's engine, or a client-only engine on ``db`` for commands that need no workflow code."""
    if app_spec:
        return load_engine(app_spec)
    return Engine(db, worker=False)


@contextmanager
def opened(spec: str, *, worker: bool = True) -> Iterator[Engine]:
    """The app's engine for the length of one command; ``worker=False`` only enqueues and reads."""
    engine = load_engine(spec)
    if not worker:
        engine.client_only()
    try:
        yield engine
    finally:
        engine.close()


@contextmanager
def opened_or_client(app_spec: str | None, db: str | None) -> Iterator[Engine]:
    """``open_engine`` for the length of one command."""
    engine = open_engine(app_spec, db)
    try:
        yield engine
    finally:
        engine.close()


def redact_url(url: str) -> str:
    """The URL without its password, for output."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, default=str, indent=2))
