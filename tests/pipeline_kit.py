"""The ``data.pipeline`` recipes of examples/data_pipeline.py, loaded from the example itself.

Loaded by path (the examples are scripts, not a package) so the tests check the
very recipes the README points to.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import plait

_PATH = Path(__file__).resolve().parents[1] / "examples" / "data_pipeline.py"
_spec = importlib.util.spec_from_file_location("plait_example_data_pipeline", _PATH)
assert _spec is not None and _spec.loader is not None
_example = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _example  # pydantic resolves the example's models through it
_spec.loader.exec_module(_example)

RECIPES: plait.Recipes = _example.RECIPES
standard: plait.Workflow[Any, Any] = _example.standard
quick: plait.Workflow[Any, Any] = _example.quick
deep: plait.Workflow[Any, Any] = _example.deep
