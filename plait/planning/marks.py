"""What a run started from a plan carries: the recipe, its variant and the steps to skip.

They live in the run's metadata under one reserved key, so every worker, the
API and ``list_runs(recipe=...)`` read the same thing from the run row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

RECIPE_KEY: Final = "plait.recipe"
"""The reserved metadata key: ``{"id", "variant", "workflow", "skip_steps"}``."""


def recipe_mark(recipe_id: str, variant: str, workflow: str, skip_steps: Sequence[str]) -> dict[str, Any]:
    return {"id": recipe_id, "variant": variant, "workflow": workflow, "skip_steps": list(skip_steps)}


def recipe_of(metadata: str | None) -> dict[str, Any] | None:
    """The recipe mark in a run's metadata JSON, if the run was started from a plan."""
    if not metadata or RECIPE_KEY not in metadata:  # cheap test first: most runs have no plan
        return None
    try:
        mark = json.loads(metadata).get(RECIPE_KEY)
    except (ValueError, AttributeError):
        return None
    return mark if isinstance(mark, dict) else None


def planned_skips(metadata: str | None) -> frozenset[str]:
    """The ids of the steps the run's plan skips."""
    mark = recipe_of(metadata)
    steps = mark.get("skip_steps") if mark else None
    return frozenset(s for s in steps if isinstance(s, str)) if isinstance(steps, list) else frozenset()
