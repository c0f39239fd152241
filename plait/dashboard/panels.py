"""Where features add to the dashboard: extra run-table columns, run panels, step panels and workflow panels.

A panel is a title, a template and a loader; the page shows it only when the
loader returns something (``None`` hides it). A column is a header and a
function of the run returning text (``None`` shows a dash). Features register
theirs at import time, (the run metadata panel below is one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from plait.runs import Event, Run, StepRecord


@dataclass(frozen=True)
class Column:
    title: str
    value: Callable[[Run], str | None]


@dataclass(frozen=True)
class RunPanel:
    """``load(run, steps, events)`` gives the template's ``data``."""

    title: str
    template: str
    load: Callable[[Run, list[StepRecord], list[Event]], Any]


@dataclass(frozen=True)
class StepPanel:
    """``load(step_key, attempts, events_of_the_step)`` gives the template's ``data``."""

    title: str
    template: str
    load: Callable[[str, list[StepRecord], list[Event]], Any]


@dataclass(frozen=True)
class WorkflowPanel:
    """``load(workflow_plan, recent_runs)`` gives the template's ``data``."""

    title: str
    template: str
    load: Callable[[dict[str, Any], list[Run]], Any]


RUN_COLUMNS: list[Column] = []
RUN_PANELS: list[RunPanel] = []
STEP_PANELS: list[StepPanel] = []
WORKFLOW_PANELS: list[WorkflowPanel] = []


def shown(panels: list[Any], *args: Any) -> list[tuple[Any, Any]]:
    """The panels with something to show, each with its data."""
    found = []
    for panel in panels:
        data = panel.load(*args)
        if data is not None and data != [] and data != {}:
            found.append((panel, data))
    return found


def _metadata(run: Run, steps: list[StepRecord], events: list[Event]) -> Any:
    return run.metadata or None


RUN_PANELS.append(RunPanel("Metadata", "panels/json.html", _metadata))
