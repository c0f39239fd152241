"""Why a run is not moving: the sentence ``result(timeout=...)`` gives when it runs out of time."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from plait.store.base import RunRow


def _at(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "an unknown time"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def describe_stall(row: RunRow, now: float, *, has_worker: bool) -> str:
    """What run ``row`` waits for, and what would move it, in one sentence."""
    if row.status_message:  # the store's own diagnosis, e.g. no worker has this workflow version
        return row.status_message
    wait: dict[str, Any] = {}
    try:
        wait = json.loads(row.wait_info or "{}") or {}
    except ValueError:
        wait = {}
    kind = wait.get("kind")
    step = wait.get("step_id")
    if row.status == "pending":
        if row.ready_at > now:
            return f"pending: it starts at {_at(row.ready_at)}"
        who = "" if has_worker else " (this engine was made with worker=False)"
        return (
            f"pending: no worker has claimed it{who}; start one with `plait worker --app myapp:engine` "
            f"or engine.work(), for namespace '{row.namespace}'"
        )
    if row.status == "running":
        return f"running step by step on worker {row.owner or 'unknown'}; it has not finished yet"
    if row.status == "suspended":
        return f"suspended in step '{step}' until it is resumed (plait runs resume {row.id} {step} or run.resume)"
    if kind == "sleep":
        return f"sleeping until {_at(wait.get('wake_at'))} at step '{step}'"
    if kind == "event":
        return (
            f"waiting for event '{wait.get('event')}' at step '{step}' "
            f"(send it with run.send_event or POST /api/runs/{row.id}/events)"
        )
    if kind == "approval":
        return f"waiting for approval of step '{step}' (run.approve or the dashboard)"
    if kind == "child":
        return f"waiting for child run {wait.get('child_run_id')} started by step '{step}'"
    if kind == "retry":
        return f"retrying step '{step}' (attempt {wait.get('attempt')}) at {_at(wait.get('wake_at'))}"
    if kind == "poll":
        return f"polling step '{step}', next check at {_at(wait.get('next_check'))}"
    return f"{row.status}"
