"""``plait documents list|show|save|apply|run``: stored workflow documents from the command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from plait.cli.common import AppOption, DbOption, JsonOption, app, console, opened, opened_or_client, print_json
from plait.cli.runs import parse_input
from plait.documents.model import WorkflowDocument

documents_app = typer.Typer(
    help="Workflow documents: stored versions, patch operations and runs.", no_args_is_help=True
)
app.add_typer(documents_app, name="documents")

ActorOption = Annotated[str, typer.Option("--actor", envvar="PLAIT_ACTOR", help="who sends the ops: llm or user")]


@documents_app.command("list")
def documents_list(app_spec: AppOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """The latest version of every stored document."""
    with opened_or_client(app_spec, db) as engine:
        found = engine.documents()
        if as_json:
            print_json([d.model_dump(mode="json") for d in found])
            return
        table = Table("document", "version", "actor", "saved")
        for item in found:
            table.add_row(item.id, str(item.version), item.actor, item.created_at.isoformat())
        console.print(table)


@documents_app.command("show")
def documents_show(
    document_id: str,
    app_spec: AppOption = None,
    db: DbOption = None,
    version: Annotated[int | None, typer.Option("--version", help="a stored version (default: the latest)")] = None,
    versions: Annotated[bool, typer.Option("--versions", help="list the versions and the ops that made them")] = False,
) -> None:
    """A stored document as JSON (or its version history)."""
    with opened_or_client(app_spec, db) as engine:
        if versions:
            print_json([v.model_dump(mode="json") for v in engine.document_versions(document_id)])
            return
        print_json(engine.document(document_id, version).to_data())


@documents_app.command("save")
def documents_save(
    document: Annotated[str, typer.Argument(help="the document: JSON text or @file.json")],
    app_spec: Annotated[str, typer.Option("--app", envvar="PLAIT_APP", help="package.module:engine")],
    db: DbOption = None,
    expected_version: Annotated[int | None, typer.Option("--expected-version", help="refuse if not the latest")] = None,
) -> None:
    """Store a document as its next version (it must compile against the app's connectors)."""
    parsed = WorkflowDocument.parse(parse_input(document))
    with opened(app_spec, db=db) as engine:
        version = engine.save_document(parsed, actor="user", expected_version=expected_version)
        typer.echo(f"{parsed.id} version {version}")


@documents_app.command("apply")
def documents_apply(
    document_id: str,
    ops: Annotated[str, typer.Argument(help="a JSON list of ops, or @ops.json")],
    app_spec: Annotated[str, typer.Option("--app", envvar="PLAIT_APP", help="package.module:engine")],
    db: DbOption = None,
    actor: ActorOption = "user",
    expected_version: Annotated[int | None, typer.Option("--expected-version", help="refuse if not the latest")] = None,
    as_json: JsonOption = False,
) -> None:
    """Apply patch operations to a stored document; prints the summary. Exit 1 when any op was skipped."""
    if actor not in ("llm", "user"):
        raise typer.BadParameter("use --actor llm or --actor user", param_hint="--actor")
    parsed = parse_input(ops)
    with opened(app_spec, db=db) as engine:
        result = engine.patch_document(
            document_id,
            parsed if isinstance(parsed, list) else [parsed],
            actor="llm" if actor == "llm" else "user",
            expected_version=expected_version,
        )
    if as_json:
        print_json(result.model_dump(mode="json"))
    else:
        typer.echo(result.summary)
        typer.echo(f"{document_id} is at version {result.version}")
    if result.skipped:
        raise typer.Exit(1)


@documents_app.command("run")
def documents_run(
    document_id: str,
    app_spec: Annotated[str, typer.Option("--app", envvar="PLAIT_APP", help="package.module:engine")],
    db: DbOption = None,
    input_text: Annotated[str, typer.Option("--input", "-i", help="JSON input, or @file.json")] = "null",
    version: Annotated[int | None, typer.Option("--version", help="a stored version (default: the latest)")] = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="wait for the result")] = False,
    as_json: JsonOption = False,
) -> None:
    """Start a run of a stored document, pinned to its latest (or the given) version."""
    value = parse_input(input_text)
    with opened(app_spec, db=db) as engine:
        workflow = engine.compile_document(engine.document(document_id, version))
        run = engine.start(workflow, value)
        if not wait:
            print_json({"run_id": run.id}) if as_json else typer.echo(run.id)
            return
        output = run.result()
        print_json({"run_id": run.id, "output": output}) if as_json else print_json(output)
