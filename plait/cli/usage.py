"""``plait usage``: model tokens and cost per workflow, model, day or step."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from plait.cli.admin import parse_age
from plait.cli.common import AppOption, DbOption, JsonOption, app, console, opened_or_client, print_json


@app.command("usage")
def usage(
    since: Annotated[str | None, typer.Option("--since", help="only calls this recent, like 7d, 12h or 90m")] = None,
    by: Annotated[str, typer.Option("--by", help="group by workflow, model, day or step")] = "workflow",
    workflow: Annotated[str | None, typer.Option("--workflow", help="only this workflow")] = None,
    app_spec: AppOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print model usage (tokens, cost, calls, runs) grouped --by workflow, model, day or step."""
    age = parse_age(since) if since is not None else None
    with opened_or_client(app_spec, db) as engine:
        rows = engine.usage(workflow=workflow, since=age, group_by=by)  # type: ignore[arg-type]
    if as_json:
        print_json([row.model_dump() for row in rows])
        return
    table = Table(title=f"usage by {by}" + (f" in the last {since}" if since else ""))
    for column in (by, "calls", "runs", "input tokens", "output tokens", "cost (USD)"):
        table.add_column(column, justify="left" if column == by else "right")
    for row in rows:
        cost = "unknown" if row.cost is None else f"{row.cost:.6f}"
        if row.cost is not None and row.unknown_cost_calls:
            cost += f" (+{row.unknown_cost_calls} unpriced)"
        table.add_row(row.key, str(row.calls), str(row.runs), str(row.input_tokens), str(row.output_tokens), cost)
    console.print(table)
