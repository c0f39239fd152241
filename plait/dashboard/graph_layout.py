"""A layered, top-down layout of a workflow's plan (``Workflow.to_dict()``), drawn as SVG by the templates.

Each top-level node is one layer; a parallel or branch node puts its steps side
by side. Boxes carry the step id, so a run's page can colour each by status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 168, 34, 20, 40, 12
LABEL_CHARS = 20


@dataclass
class Box:
    id: str
    kind: str
    label: str
    title: str
    x: int = 0
    y: int = 0
    w: int = BOX_W
    h: int = BOX_H
    status: str = "pending"
    child_workflow: str | None = None

    @property
    def cx(self) -> int:
        return self.x + self.w // 2


@dataclass
class Edge:
    x1: int
    y1: int
    x2: int
    y2: int
    label: str = ""


@dataclass
class Layout:
    width: int
    height: int
    layers: list[list[Box]] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    @property
    def boxes(self) -> list[Box]:
        return [box for layer in self.layers for box in layer]


def _short(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _task_box(task: dict[str, Any], kind: str, note: str = "") -> Box:
    child = task.get("workflow") if task.get("type") == "workflow" else None
    title = task["id"] + (f" (workflow {child})" if child else "") + (f" — {note}" if note else "")
    label = _short(task["id"]) if not note else _short(f"{task['id']} ⟳")
    return Box(id=task["id"], kind=kind, label=label, title=title, child_workflow=child)


def node_boxes(node: dict[str, Any]) -> list[Box]:
    """The boxes one plan node draws: one per step it can run, or one for the node itself."""
    kind = node["kind"]
    if kind == "step":
        return [_task_box(node["task"], kind)]
    if kind == "parallel":
        return [_task_box(t, kind) for t in node["tasks"]]
    if kind == "branch":
        tasks = [case["task"] for case in node["cases"]] + ([node["default"]] if node.get("default") else [])
        return [_task_box(t, kind) for t in tasks]
    if kind == "foreach":
        return [_task_box(node["task"], kind, "for each item")]
    if kind == "loop":
        return [_task_box(node["task"], kind, "loop")]
    label = {"map": "map", "sleep": "sleep", "wait_for_event": "wait"}.get(kind, kind)
    detail = f" for event {node['event']!r}" if kind == "wait_for_event" else ""
    return [Box(id=node["id"], kind=kind, label=_short(f"{label}: {node['id']}"), title=f"{kind} {node['id']}{detail}")]


def branch_labels(node: dict[str, Any]) -> dict[str, str]:
    if node["kind"] != "branch":
        return {}
    labels = {case["task"]["id"]: case["when"] for case in node["cases"]}
    if node.get("default"):
        labels[node["default"]["id"]] = "default"
    return labels


def layout(plan: dict[str, Any], statuses: dict[str, str] | None = None) -> Layout:
    """Place every box of ``plan`` and the edges between consecutive layers; colour boxes by ``statuses``."""
    statuses = statuses or {}
    start = Box(id="__start", kind="terminal", label="start", title="start")
    end = Box(id="__end", kind="terminal", label="end", title="end")
    layers = [[start], *[node_boxes(node) for node in plan["nodes"]], [end]]
    labels = [{}, *[branch_labels(node) for node in plan["nodes"]], {}]
    widest = max(len(layer) for layer in layers)
    width = widest * BOX_W + (widest - 1) * GAP_X + 2 * PAD
    for row, layer in enumerate(layers):
        span = len(layer) * BOX_W + (len(layer) - 1) * GAP_X
        left = (width - span) // 2
        for col, box in enumerate(layer):
            box.x, box.y = left + col * (BOX_W + GAP_X), PAD + row * (BOX_H + GAP_Y)
            box.status = statuses.get(box.id, "pending") if box.kind != "terminal" else "terminal"
    edges = [
        Edge(a.cx, a.y + a.h, b.cx, b.y, labels[row + 1].get(b.id, ""))
        for row in range(len(layers) - 1)
        for a in layers[row]
        for b in layers[row + 1]
    ]
    height = PAD * 2 + len(layers) * BOX_H + (len(layers) - 1) * GAP_Y
    return Layout(width=width, height=height, layers=layers, edges=edges)
