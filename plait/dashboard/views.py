"""What the pages show, computed from engine records: step statuses, previews of values, timelines, durations."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from plait.runs import Event, Run, RunStatus, StepRecord
from plait.usage.models import Usage

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


ATTEMPT_ENDS = {"step.completed", "step.failed", "step.skipped", "step.retrying", "step.timeout"}


def started_steps(events: list[Event]) -> set[str]:
    """Step ids with a ``step.started`` event and no outcome yet: the steps running now.

    A step's ``step.started`` is written with its first log or progress line (or
    its commit), so a silent step that is still working has none yet.
    """
    open_attempts: dict[tuple[str, int], str] = {}
    for event in events:
        attempt = (event.step_key or event.step_id or "", event.attempt or 1)
        if event.type == "step.started" and event.step_id:
            open_attempts[attempt] = event.step_id
        elif event.type in ATTEMPT_ENDS:
            open_attempts.pop(attempt, None)
    return set(open_attempts.values())


def step_statuses(run: Run, steps: list[StepRecord], plan: dict[str, Any], events: list[Event]) -> dict[str, str]:
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
    if run.status == RunStatus.RUNNING:
        running = started_steps(events)
        for step_id in running:
            statuses[step_id] = "running"
        if not running:
            _mark_running(plan, statuses)
    if run.wait and run.status in (RunStatus.WAITING, RunStatus.SUSPENDED, RunStatus.PENDING):
        waited = run.wait.get("step_id")
        if waited:
            statuses[str(waited)] = "waiting"
    return statuses


def _mark_running(plan: dict[str, Any], statuses: dict[str, str]) -> None:
    """No step has said it started (a silent step writes its start with its commit): the first node not done."""
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
    """One attempt or wait on the timeline, in SVG units (the run's span maps to 0..1000)."""

    label: str
    status: str
    x: float
    w: float
    y: int
    title: str
    kind: str = "attempt"


WAIT_STARTS = {"run.waiting", "run.suspended"}
WAIT_ENDS = {"run.resumed", "run.completed", "run.failed", "run.cancelled", "run.timeout"}


@dataclass(frozen=True)
class Wait:
    kind: str
    step_id: str
    detail: str
    start: datetime
    end: datetime | None


def waits(events: list[Event]) -> list[Wait]:
    """The run's waits (sleep, event, approval, retry backoff, ...) from its waiting and resumed events."""
    found: list[Wait] = []
    current: tuple[dict[str, Any], datetime] | None = None
    for event in events:
        if event.type in WAIT_STARTS:
            info = event.payload if isinstance(event.payload, dict) else {}
            current = (info, event.created_at)
        elif event.type in WAIT_ENDS and current is not None:
            found.append(_wait(*current, event.created_at))
            current = None
    if current is not None:
        found.append(_wait(*current, None))
    return found


def _wait(info: dict[str, Any], start: datetime, end: datetime | None) -> Wait:
    kind = str(info.get("kind") or "wait")
    detail = str(info.get("event") or info.get("until") or "")
    return Wait(kind, str(info.get("step_id") or ""), detail, start, end)


def timeline(run: Run, steps: list[StepRecord], events: list[Event], now: datetime) -> tuple[list[Bar], int]:
    """Bars for every attempt (retries are separate bars) and every wait; returns them and the SVG height."""
    found = waits(events)
    if not steps and not found:
        return [], 0
    origin = min([run.started_at or run.created_at, *(s.started_at for s in steps), *(w.start for w in found)])
    end = max([run.finished_at or now, *(s.finished_at for s in steps)])
    span = max((end - origin).total_seconds(), 1e-3)

    def place(start: datetime, stop: datetime) -> tuple[float, float]:
        x = (start - origin).total_seconds() / span * 1000
        return round(x, 2), round(max((stop - start).total_seconds() / span * 1000, 2.0), 2)

    items: list[tuple[datetime, Bar]] = []
    for record in steps:
        label = record.key + (f" (attempt {record.attempt})" if record.attempt > 1 else "")
        took = duration(record.started_at, record.finished_at, now)
        x, w = place(record.started_at, record.finished_at)
        items.append((record.started_at, Bar(label, record.status, x, w, 0, f"{label}: {record.status}, {took}")))
    for wait in found:
        label = f"{wait.kind}: {wait.step_id}" if wait.step_id else wait.kind
        took = duration(wait.start, wait.end, now)
        state = "waiting" if wait.end is None else "waited"
        x, w = place(wait.start, wait.end or end)
        detail = f" ({wait.detail})" if wait.detail else ""
        items.append((wait.start, Bar(label, state, x, w, 0, f"{label}{detail}: {state}, {took}", "wait")))
    items.sort(key=lambda item: item[0])
    bars = [replace(bar, y=row * 22) for row, (_, bar) in enumerate(items)]
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
    by_key: dict[str, list[Event]] = {}
    for event in events:  # one pass: a 200-step run has hundreds of events
        key = event.step_key or event.step_id
        if key is not None:
            by_key.setdefault(key, []).append(event)
    views = []
    for key, attempts in grouped.items():
        mine = by_key.get(key, [])
        logs = [e for e in mine if e.type == "step.log"]
        other = [e for e in mine if e.type in ("step.progress", "step.retrying")]
        views.append(StepView(key, attempts[0].step_id, attempts, logs, other))
    return views


def usage_line(usage: Usage) -> str | None:
    """``1,200 in · 300 out · $0.0042 · gpt-4o`` for a step attempt or a run; None when it made no model call."""
    if not usage.calls:
        return None
    parts = [f"{usage.input_tokens:,} in", f"{usage.output_tokens:,} out", cost_text(usage.cost)]
    if usage.by_model:
        parts.append(", ".join(sorted(usage.by_model)))
    return " · ".join(parts)


def cost_text(cost: float | None) -> str:
    if cost is None:
        return "cost unknown"
    return f"${cost:.4f}" if cost < 1 else f"${cost:,.2f}"


@dataclass(frozen=True)
class WorkflowStats:
    """Figures over a workflow's most recent runs (the dashboard never counts every run)."""

    sampled: int
    by_status: dict[str, int]
    success_rate: float | None
    p50_seconds: float | None
    p50_cost: float | None


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
    costs = [run.usage.cost for run in runs if run.status == RunStatus.SUCCEEDED and run.usage.cost is not None]
    return WorkflowStats(
        len(runs),
        by_status,
        rate,
        statistics.median(times) if times else None,
        statistics.median(costs) if costs else None,
    )
