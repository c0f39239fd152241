"""Recipes and the planner: variants of a workflow chosen by rules on the input, planned and estimated.

``Recipes`` holds ``Recipe`` objects; ``Planner(recipes).plan(workflow, input)``
gives a ``Plan`` that ``engine.start(plan)`` runs. The engine stores recipes
and reads history through ``plait.engine_planning``.
"""

from plait.planning.estimate import Estimate
from plait.planning.plan import Plan, PlanConstraints, PlanHints
from plait.planning.planner import Candidate, Planner, Selection
from plait.planning.recipes import Condition, Recipe, Recipes
from plait.planning.skips import PlanStep

__all__ = [
    "Candidate",
    "Condition",
    "Estimate",
    "Plan",
    "PlanConstraints",
    "PlanHints",
    "PlanStep",
    "Planner",
    "Recipe",
    "Recipes",
    "Selection",
]
