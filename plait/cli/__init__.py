"""The ``plait`` command line: a thin layer over the engine's API.

Exit codes: 0 success, 1 the run failed or was cancelled, 2 usage or input error.
Errors print one line (``error [code]: message``) unless ``--debug`` is given.
"""

from __future__ import annotations

import typer

from plait.cli import admin, demo, documents, runs, usage
from plait.cli.common import app, state
from plait.cli.hints import cli_message
from plait.errors import PlaitError, RunCancelled, RunFailed

__all__ = ["admin", "app", "demo", "documents", "main", "runs", "usage"]


def main() -> None:
    try:
        result = app(standalone_mode=False)
        if isinstance(result, int):  # typer.Exit(code) comes back as the code without standalone mode
            raise SystemExit(result)
    except (RunFailed, RunCancelled) as exc:
        typer.echo(f"error [{exc.code}]: {cli_message(exc.message)}", err=True)
        raise SystemExit(1) from None
    except PlaitError as exc:
        if state.debug:
            raise
        typer.echo(f"error [{exc.code}]: {cli_message(exc.message)}", err=True)
        raise SystemExit(2) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        typer.echo("aborted", err=True)
        raise SystemExit(1) from None
    except Exception as exc:  # click usage errors and anything unexpected: one line, exit 2
        if state.debug:
            raise
        message = exc.format_message() if hasattr(exc, "format_message") else f"{type(exc).__name__}: {exc}"
        typer.echo(f"error: {message}", err=True)
        raise SystemExit(2 if hasattr(exc, "format_message") else 1) from None
