"""What every ``plait`` command shares: the app, --app / --db, and output helpers."""

from __future__ import annotations

import importlib
import json
import logging
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
from plait.hooks import HookInfo

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


def database_url(value: str | None) -> str | None:
    """``--db``: a database URL, or a plain path to a SQLite file (``app.db``)."""
    if value is None or "://" in value:
        return value
    return f"sqlite:///{value}"


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="PLAIT_DATABASE_URL",
        callback=database_url,
        help="database URL or SQLite file path (default sqlite:///plait.db)",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def load_engine(spec: str, db: str | None = None) -> Engine:
    """Import ``package.module:attribute`` and return the Engine it names.

    With ``db`` the app's ``plait.Engine()`` (no URL) opens that database: it
    is set as ``PLAIT_DATABASE_URL`` before the module is imported.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise typer.BadParameter("use --app package.module:engine", param_hint="--app")
    if db is not None:
        os.environ["PLAIT_DATABASE_URL"] = db
    sys.path.insert(0, os.getcwd())
    try:
        engine = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise typer.BadParameter(f"cannot load {spec!r}: {exc}", param_hint="--app") from exc
    if not isinstance(engine, Engine):
        raise typer.BadParameter(f"{spec!r} is a {type(engine).__name__}, not a plait.Engine", param_hint="--app")
    if db is not None and engine.url != db:
        typer.echo(
            f"warning: the app's engine opens {redact_url(engine.url)}, not {redact_url(db)}; make it with "
            "plait.Engine() (no URL) so that --db and PLAIT_DATABASE_URL choose the database",
            err=True,
        )
    return engine


def open_engine(app_spec: str | None, db: str | None) -> Engine:
    """The app's engine, or a client-only engine on ``db`` for commands that need no workflow code."""
    if app_spec:
        return load_engine(app_spec, db)
    return Engine(db, worker=False)


@contextmanager
def opened(spec: str, *, worker: bool = True, db: str | None = None) -> Iterator[Engine]:
    """The app's engine for the length of one command; ``worker=False`` only enqueues and reads."""
    engine = load_engine(spec, db)
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


class RunLines:
    """Logs one INFO line when this process's worker starts a run and one when it ends it."""

    def __init__(self) -> None:
        self.log = logging.getLogger("plait.runs")

    async def run_started(self, info: HookInfo) -> None:
        self.log.info("run %s of %s started", info.run_id, info.workflow_id)

    async def run_ended(self, info: HookInfo) -> None:
        error = f": {info.error.get('message')}" if info.error else ""
        self.log.info("run %s of %s %s%s", info.run_id, info.workflow_id, info.status, error)

    async def step_started(self, info: HookInfo) -> None:
        return None

    async def step_ended(self, info: HookInfo) -> None:
        return None


def log_runs(engine: Engine, *, quiet: bool) -> None:
    """Log to stderr: a line per run start and finish, or with ``quiet`` only warnings."""
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not quiet:
        engine._worker.observers.append(RunLines())


def redact_url(url: str) -> str:
    """The URL without its password, for output."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, default=str, indent=2))
