"""What the pages show, computed from engine records: step statuses, previews of values, timelines, durations."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from plait.runs import Event, Run, RunStatus, StepRecord

PREVIEW_CHARS = 4000
FINAL_STEP = {"succeeded", "failed", "skipped"}


@dataclass(frozen=True)
class Preview:
    """A value as indented JSON, cut at ``PREVIEW_CHARS``; ``truncated`` says to offer the download link."""

    text: str
    truncated: bool
    size: int


def preview(value: Any, limit: int = PREVIEW_CHARS) -> Preview:
    text = json.dumps(value, indent=2, default=str, ensure_ascii=False)
    if len(text) <= limit:
        return Preview(text, False, len(text))
    return Preview(text[:limit] + "\n…", True, len(text))


def duration(start: datetime | None, end: datetime | None, now: datetime) -> str:
    """A short human duration; a run still going counts up to ``now``."""
    if start is None:
        return "—"
    seconds = max(0.0, ((end or now) - start).total_seconds())
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def step_statuses(run: Run, steps: list[StepRecord], plan: dict[str, Any]) -> dict[str, str]:
    """Each step id's status for the graph: its latest attempts, then what the run waits on or runs now."""
    latest: dict[str, StepRecord] = {}
    for record in sorted(steps, key=lambda r: (r.finished_at, r.attempt)):
        latest[record.key] = record
    by_step: dict[str, list[str]] = {}
    for record in latest.values():
        by_step.setdefault(record.step_id, []).append(record.status)
    statuses: dict[str, str] = {}
    for step_id, found in by_step.items():
        if "failed" in found:
            statuses[step_id] = "failed"
        elif all(s == "skipped" for s in found):
            statuses[step_id] = "skipped"
        else:
            statuses[step_id] = "succeeded"
    if run.wait and run.status in (RunStatus.WAITING, RunStatus.SUSPENDED, RunStatus.PENDING):
        waited = run.wait.get("step_id")
        if waited:
            statuses[str(waited)] = "waiting"
    if run.status == RunStatus.RUNNING:
        _mark_running(plan, statuses)
    return statuses


def _mark_running(plan: dict[str, Any], statuses: dict[str, str]) -> None:
    """The first node not yet done is the one running (the step rows say only what has finished)."""
    from plait.dashboard.graph_layout import node_boxes

    for node in plan["nodes"]:
        ids = [box.id for box in node_boxes(node)]
        done = [i for i in ids if statuses.get(i) in FINAL_STEP]
        if (node["kind"] == "branch" and done) or len(done) == len(ids):
            continue
        for step_id in ids:
            statuses.setdefault(step_id, "running")
        return


@dataclass(frozen=True)
class Bar:
    """One attempt on the timeline, in SVG units (the run's span maps to 0..1000)."""

    label: str
    status: str
    x: float
    w: float
    y: int
    title: str


def timeline(run: Run, steps: list[StepRecord], now: datetime) -> tuple[list[Bar], int]:
    """Bars for every attempt (retries are separate bars); returns them and the SVG height."""
    if not steps:
        return [], 0
    origin = min([run.started_at or run.created_at, *(s.started_at for s in steps)])
    end = max([run.finished_at or now, *(s.finished_at for s in steps)])
    span = max((end - origin).total_seconds(), 1e-3)
    bars = []
    ordered = sorted(steps, key=lambda s: (s.started_at, s.attempt))
    for row, record in enumerate(ordered):
        x = (record.started_at - origin).total_seconds() / span * 1000
        w = max((record.finished_at - record.started_at).total_seconds() / span * 1000, 2.0)
        label = record.key + (f" (attempt {record.attempt})" if record.attempt > 1 else "")
        took = duration(record.started_at, record.finished_at, now)
        bars.append(Bar(label, record.status, round(x, 2), round(w, 2), row * 22, f"{label}: {record.status}, {took}"))
    return bars, len(bars) * 22


@dataclass(frozen=True)
class StepView:
    """One step key's attempts, newest last, with the events (logs, usage, progress) it emitted."""

    key: str
    step_id: str
    attempts: list[StepRecord]
    logs: list[Event]
    other_events: list[Event]

    @property
    def last(self) -> StepRecord:
        return self.attempts[-1]


def step_views(steps: list[StepRecord], events: list[Event]) -> list[StepView]:
    grouped: dict[str, list[StepRecord]] = {}
    for record in sorted(steps, key=lambda s: (s.started_at, s.attempt)):
        grouped.setdefault(record.key, []).append(record)
    views = []
    for key, attempts in grouped.items():
        mine = [e for e in events if (e.step_key or e.step_id) == key or (e.step_key is None and e.step_id == key)]
        logs = [e for e in mine if e.type == "step.log"]
        other = [e for e in mine if e.type in ("step.usage", "step.progress", "step.retrying")]
        views.append(StepView(key, attempts[0].step_id, attempts, logs, other))
    return views


@dataclass(frozen=True)
class WorkflowStats:
    """Figures over a workflow's most recent runs (the dashboard never counts every run)."""

    sampled: int
    by_status: dict[str, int]
    success_rate: float | None
    p50_seconds: float | None


def workflow_stats(runs: list[Run]) -> WorkflowStats:
    by_status: dict[str, int] = {}
    for run in runs:
        by_status[run.status.value] = by_status.get(run.status.value, 0) + 1
    ended = by_status.get("succeeded", 0) + by_status.get("failed", 0)
    rate = by_status.get("succeeded", 0) / ended if ended else None
    times = [
        (run.finished_at - run.started_at).total_seconds()
        for run in runs
        if run.status == RunStatus.SUCCEEDED and run.started_at and run.finished_at
    ]
    return WorkflowStats(len(runs), by_status, rate, statistics.median(times) if times else None)
