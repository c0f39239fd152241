"""Recipes and the planner without a database: selection, reasons, hints, skips and bad input."""

from __future__ import annotations

import statistics
from typing import Any

import pytest

import plait
from plait.documents.conditions import field_holds, lookup_field
from plait.planning.estimate import RunHistory, estimate_from
from tests.document_kit import count, enrich, slack
from tests.pipeline_kit import RECIPES, deep, quick, standard

When = plait.Condition
JOB: dict[str, Any] = {"size": "small", "values": [1.0]}


@pytest.fixture
def planner() -> plait.Planner:
    return plait.Planner(RECIPES)


@pytest.mark.parametrize(
    ("size", "variant"), [("small", "fast"), ("large", "thorough"), ("medium", "default"), ("", "default")]
)
def test_each_input_selects_its_recipe(planner: plait.Planner, size: str, variant: str) -> None:
    selection = planner.select("data.pipeline", {"size": size, "values": []})
    assert selection.recipe.variant == variant
    assert selection.recipe is RECIPES.variant("data.pipeline", variant)


def test_the_selection_explains_what_matched_and_why_the_others_lost(planner: plait.Planner) -> None:
    selection = planner.select("data.pipeline", {"size": "large", "values": []})
    assert selection.matched == ['size eq "large"']
    assert "priority 20" in selection.reason
    outcomes = {c.recipe: c.outcome for c in selection.candidates}
    assert outcomes["pipeline-thorough"] == "chosen"
    assert outcomes["pipeline-fast"] == 'conditions failed: size eq "small" (got "large")'
    assert outcomes["pipeline-default"] == "lower priority (0 < 20 of 'pipeline-thorough')"


def test_a_higher_priority_recipe_wins_when_both_hold() -> None:
    both = plait.Recipes(
        [
            plait.Recipe(id="a", workflow="w", variant="a", body=quick, conditions=[plait.Condition("size", "exists")]),
            plait.Recipe(
                id="b", workflow="w", variant="b", body=deep, conditions=[plait.Condition("size", "exists")], priority=5
            ),
        ]
    )
    assert plait.Planner(both).select("w", {"size": "x"}).recipe.id == "b"


def test_on_equal_priority_the_more_specific_recipe_wins() -> None:
    recipes = plait.Recipes(
        [
            plait.Recipe(id="any", workflow="w", variant="default", body=standard),
            plait.Recipe(
                id="small", workflow="w", variant="small", body=quick, conditions=[plait.Condition("size", "eq", "s")]
            ),
        ]
    )
    selection = plait.Planner(recipes).select("w", {"size": "s"})
    assert selection.recipe.id == "small"
    assert "more specific" in next(c.outcome for c in selection.candidates if c.recipe == "any")


def test_prefer_variant_wins_when_its_conditions_hold_and_is_explained_when_not(planner: plait.Planner) -> None:
    chosen = planner.select("data.pipeline", {"size": "small"}, plait.PlanHints(prefer_variant="default"))
    assert chosen.recipe.variant == "default"
    assert "preferred by hint" in chosen.reason
    fallback = planner.select("data.pipeline", {"size": "large"}, plait.PlanHints(prefer_variant="fast"))
    assert fallback.recipe.variant == "thorough"
    assert 'preferred variant \'fast\' was not used: size eq "small" (got "large")' in fallback.reason


def test_a_hint_naming_an_unknown_variant_is_a_plan_error(planner: plait.Planner) -> None:
    with pytest.raises(plait.PlanError, match=r"no variant 'turbo'.*variants: thorough, fast, default"):
        planner.select("data.pipeline", JOB, plait.PlanHints(prefer_variant="turbo"))


def test_no_recipe_matching_lists_every_candidate_and_its_failed_conditions() -> None:
    recipes = plait.Recipes(
        [
            plait.Recipe(
                id="s", workflow="w", variant="s", body=quick, conditions=[plait.Condition("size", "eq", "small")]
            ),
            plait.Recipe(
                id="l", workflow="w", variant="l", body=deep, conditions=[plait.Condition("rows", "gt", 1000)]
            ),
        ]
    )
    with pytest.raises(plait.NoRecipeMatched) as caught:
        plait.Planner(recipes).select("w", {"size": "medium"})
    error = caught.value
    assert error.code == "plan.no_recipe"
    assert isinstance(error, plait.PlanError)
    assert '\'s\' (size eq "small" (got "medium"))' in error.message
    assert "'l' (rows gt 1000 (got nothing: the field is missing))" in error.message
    assert [c["recipe"] for c in error.details["candidates"]] == ["l", "s"]
    with pytest.raises(plait.NoRecipeMatched, match="has no recipes"):
        plait.Planner(recipes).select("unknown", {})


def test_conditions_read_dot_paths_with_the_document_operators() -> None:
    data = {"job": {"size": 12, "tags": ["x", "urgent"], "name": "Q3 report"}, "rows": [{"n": 1}]}
    assert plait.Condition("job.size", "gte", 12).holds(data)
    assert plait.Condition("job.tags", "contains", "urgent").holds(data)
    assert plait.Condition("job.name", "matches", r"^Q\d").holds(data)
    assert plait.Condition("rows.0.n", "eq", 1).holds(data)
    assert not plait.Condition("job.size", "gt", "12").holds(data)  # a number and a string never compare
    assert not plait.Condition("rows.5.n", "eq", 1).holds(data)


def test_a_missing_field_matches_only_not_exists() -> None:
    data = {"present": None}
    assert plait.Condition("absent", "not_exists").holds(data)
    assert not plait.Condition("absent", "exists").holds(data)
    for op, value in [("eq", None), ("neq", 1), ("lt", 5), ("contains", "x"), ("matches", ".*")]:
        assert not plait.Condition("absent", op, value).holds(data), op
    # The same rules in the one shared implementation the documents use.
    assert field_holds("eq", data, "present", None)
    assert not field_holds("eq", data, "absent", None)
    assert lookup_field({"a": [1, {"b": 2}]}, "a.1.b") == 2


def test_bad_conditions_are_plan_errors() -> None:
    with pytest.raises(plait.PlanError, match=r"unknown condition operator 'bigger'.*use one of eq, neq"):
        plait.Condition("size", "bigger", 1)
    with pytest.raises(plait.PlanError, match="not a valid regular expression"):
        plait.Condition("name", "matches", "(")
    with pytest.raises(plait.PlanError, match="not a dot path"):
        plait.Condition("a..b", "eq", 1)
    with pytest.raises(plait.PlanError, match="unknown condition operator"):
        plait.Recipe(id="r", workflow="w", variant="v", body=quick, conditions=[plait.Condition("a", "~", 1)])


def test_two_recipes_with_the_same_id_or_variant_are_refused() -> None:
    first = plait.Recipe(id="r", workflow="w", variant="a", body=quick)
    recipes = plait.Recipes([first])
    recipes.add(first)  # the same recipe again is harmless
    with pytest.raises(plait.PlanError, match="two recipes have the id 'r'"):
        recipes.add(plait.Recipe(id="r", workflow="w", variant="b", body=deep))
    with pytest.raises(plait.PlanError, match="'r' and 'r2' are both variant 'a' of workflow 'w'"):
        recipes.add(plait.Recipe(id="r2", workflow="w", variant="a", body=deep))
    assert len(recipes) == 1


def test_the_registry_answers_by_workflow_variant_default_and_tags() -> None:
    assert [r.variant for r in RECIPES.for_workflow("data.pipeline")] == ["thorough", "fast", "default"]
    assert RECIPES.variants("data.pipeline") == ["thorough", "fast", "default"]
    assert RECIPES.default("data.pipeline") is RECIPES.get("pipeline-default")
    assert RECIPES.default("other") is None
    assert [r.id for r in RECIPES.query(tags=["cheap"])] == ["pipeline-fast"]
    assert len(RECIPES.query()) == 3


def test_constraints_keep_only_recipes_with_the_required_tags(planner: plait.Planner) -> None:
    selection = planner.select("data.pipeline", {"size": "small"}, constraints={"require_tags": ["cheap"]})
    assert selection.recipe.id == "pipeline-fast"
    with pytest.raises(plait.NoRecipeMatched, match="lacks required tags"):
        planner.select("data.pipeline", {"size": "large"}, constraints=plait.PlanConstraints(require_tags=["cheap"]))
    with pytest.raises(plait.PlanError, match="unknown constraints"):
        planner.select("data.pipeline", JOB, constraints={"max_cost": 1})


def test_a_plan_marks_skipped_steps_and_lists_its_modifications(planner: plait.Planner) -> None:
    plan = planner.plan("data.pipeline", {"size": "large", "values": [1.0]}, plait.PlanHints(skip_steps=["clean"]))
    assert plan.recipe.id == "pipeline-thorough"
    assert [(s.id, s.skipped) for s in plan.steps] == [
        ("load", False),
        ("clean", True),
        ("score", False),
        ("summarize_scored", False),
    ]
    assert plan.skip_steps == ["clean"]
    assert plan.modifications == ["skip step 'clean' (hint)"]
    assert plan.selection is not None and plan.reasoning[0] == plan.selection.reason
    assert "'pipeline-fast' not chosen: conditions failed" in plan.reasoning[1]
    plan.validate()


def test_skipping_a_step_whose_output_the_next_step_needs_is_refused_naming_both(planner: plait.Planner) -> None:
    with pytest.raises(plait.PlanError) as caught:
        planner.plan("data.pipeline", {"size": "large", "values": []}, plait.PlanHints(skip_steps=["score"]))
    assert "cannot skip 'score': 'summarize_scored' needs its output (Scored)" in caught.value.message
    assert caught.value.details == {"step": "score", "needed_by": "summarize_scored"}
    with pytest.raises(plait.PlanError, match="the workflow's output needs its output \\(Report\\)"):
        planner.plan("data.pipeline", JOB, plait.PlanHints(skip_steps=["summarize"]))


def test_a_hint_naming_an_unknown_step_is_a_plan_error(planner: plait.Planner) -> None:
    with pytest.raises(plait.PlanError, match=r"cannot skip 'score': no such step in 'data.pipeline.quick'") as caught:
        planner.plan("data.pipeline", JOB, plait.PlanHints(skip_steps=["score"]))  # the fast recipe has no score
    assert caught.value.details["steps"] == ["load", "summarize"]


def test_defaults_fill_missing_input_fields() -> None:
    recipes = plait.Recipes(
        [plait.Recipe(id="r", workflow="w", variant="default", body=quick, defaults={"size": "small", "values": []})]
    )
    plan = plait.Planner(recipes).plan("w", {"size": "large"})
    assert plan.input == {"size": "large", "values": []}
    assert plan.modifications == ["defaults filled in: values"]


def test_a_plan_whose_input_does_not_fit_the_body_is_refused(planner: plait.Planner) -> None:
    with pytest.raises(plait.PlanError, match="the input does not fit recipe 'pipeline-fast'"):
        planner.plan("data.pipeline", {"size": "small", "values": "many"})


LEAD = {
    "id": "leads",
    "input": {"type": "object", "properties": {"email": {"type": "string"}}},
    "blocks": [
        {"id": "enrich", "type": "crm.enrich", "params": {"email": "{{input.email}}"}},
        {"id": "tally", "type": "math.count", "params": {"count": 1}},
        {"id": "notify", "type": "slack.send", "params": {"channel": "#s", "text": "{{enrich.name}}"}},
    ],
    "output": {"tally": "{{tally.total}}"},
}


def test_document_blocks_are_refused_when_a_later_block_or_the_output_references_them() -> None:
    assert enrich and slack and count  # the kit's connectors: these documents use their types
    doc = plait.WorkflowDocument.parse(LEAD)
    recipes = plait.Recipes([plait.Recipe(id="doc", workflow="leads", variant="default", body=doc)])
    planner = plait.Planner(recipes)
    plan = planner.plan("leads", {"email": "a@b.com"}, plait.PlanHints(skip_steps=["notify"]))
    assert [(s.id, s.kind, s.skipped) for s in plan.steps][-1] == ("notify", "block", True)
    with pytest.raises(plait.PlanError, match="cannot skip 'enrich': block 'notify' references its output"):
        planner.plan("leads", {}, plait.PlanHints(skip_steps=["enrich"]))
    with pytest.raises(plait.PlanError, match="cannot skip 'tally': the document's output references it"):
        planner.plan("leads", {}, plait.PlanHints(skip_steps=["tally"]))


def test_an_estimate_is_the_median_of_history_or_says_no_history() -> None:
    empty = estimate_from("r", [])
    assert not empty.has_history and empty.p50_duration_seconds is None and empty.note.startswith("no history")
    history = [RunHistory(3.0, 2, 0.5), RunHistory(1.0, 1, None), RunHistory(10.0, 4, 0.25), RunHistory(2.0, 0, 1.0)]
    found = estimate_from("r", history)
    assert found.runs == 4
    assert found.p50_duration_seconds == 2.5  # (2 + 3) / 2
    assert found.p50_llm_calls == 1.5
    assert found.p50_cost == statistics.median([0.5, 0.25, 1.0]) == 0.5


def test_an_estimate_without_an_engine_says_how_to_get_one(planner: plait.Planner) -> None:
    with pytest.raises(plait.PlanError, match="Planner\\(recipes, engine=engine\\)"):
        planner.plan("data.pipeline", JOB).estimate()


def test_a_step_whose_input_fits_its_output_may_be_skipped() -> None:
    # clean is Rows -> Rows: skipping it hands summarize the Rows it expects.
    recipes = plait.Recipes([plait.Recipe(id="s", workflow="w", variant="default", body=standard)])
    assert plait.Planner(recipes).plan("w", JOB, plait.PlanHints(skip_steps=["clean"])).skip_steps == ["clean"]
