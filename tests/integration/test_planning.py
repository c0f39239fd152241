"""Plans run on SQLite and PostgreSQL: recipe recorded, skips honoured, history estimated, recipes stored."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

import plait
from plait.testing import FakeClock
from tests.document_kit import SECRET, count, enrich, slack
from tests.pipeline_kit import RECIPES, quick

When = plait.Condition
START = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def engine(db_url: str, clock: FakeClock) -> Iterator[plait.Engine]:
    with plait.Engine(db_url, clock=clock, poll_interval=0.05) as engine:
        yield engine


def test_a_plan_runs_its_recipe_and_the_run_records_recipe_and_variant(engine: plait.Engine) -> None:
    planner = plait.Planner(RECIPES, engine=engine)
    handles = {}
    for size in ("small", "large", "medium"):
        job = {"size": size, "values": [2.0, 3.0]}
        handles[size] = engine.start(planner.plan("data.pipeline", job), job, metadata={"team": "data"})
    for size, variant in [("small", "fast"), ("large", "thorough"), ("medium", "default")]:
        info = handles[size].info()
        assert handles[size].result(timeout=30) is not None
        assert (info.recipe, info.variant) == (f"pipeline-{variant}", variant)
        assert info.metadata is not None and info.metadata["team"] == "data"
    assert handles["small"].info().workflow_id == "data.pipeline.quick"

    fast = engine.list_runs(recipe="pipeline-fast").items
    assert [r.id for r in fast] == [handles["small"].id]
    assert engine.list_runs(recipe="nothing").items == []
    plain = engine.start(quick, {"size": "small", "values": []})
    assert plain.info().recipe is None  # a run started without a plan has no recipe


def test_skipped_steps_are_recorded_skipped_and_hand_their_input_on(engine: plait.Engine) -> None:
    planner = plait.Planner(RECIPES, engine=engine)
    job = {"size": "large", "values": [4.0, -1.0, 10.0]}
    plain = engine.start(planner.plan("data.pipeline", job), job)
    skipping = engine.start(planner.plan("data.pipeline", job, plait.PlanHints(skip_steps=["clean"])), job)
    assert plain.result(timeout=30).total == pytest.approx(14.0 + 1.4)  # -1 cleaned away
    assert skipping.result(timeout=30).total == pytest.approx(13.0 + 1.3)  # -1 kept: clean was skipped
    steps = {s.step_id: s for s in skipping.steps()}
    assert steps["clean"].status == "skipped"
    assert steps["clean"].input == {"values": [4.0, -1.0, 10.0]}
    assert {s.step_id: s.status for s in plain.steps()}["clean"] == "succeeded"


def test_a_plan_started_with_another_input_is_refused(engine: plait.Engine) -> None:
    plan = plait.Planner(RECIPES, engine=engine).plan("data.pipeline", {"size": "small", "values": []})
    with pytest.raises(plait.PlanError, match="was made for another input"):
        engine.start(plan, {"size": "large", "values": []})
    assert engine.list_runs().items == []


class Timed(BaseModel):
    until: datetime
    calls: int = 0
    cost_each: float | None = None
    fail: bool = False


@plait.step
def work(ctx: plait.Context, job: Timed) -> Timed:
    if job.fail:
        raise ValueError("this run fails")
    for _ in range(job.calls):
        ctx.record_usage(model="m", input_tokens=10, output_tokens=5, cost=job.cost_each)
    return job


timed = plait.workflow("timed", input=Timed).then(work).sleep_until(lambda job: job.until).commit()


def by_hand_median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def test_an_estimate_after_20_runs_matches_the_medians_of_those_runs(engine: plait.Engine, clock: FakeClock) -> None:
    recipes = plait.Recipes(
        [
            plait.Recipe(id="timed-default", workflow="timed", variant="default", body=timed),
            plait.Recipe(
                id="timed-other",
                workflow="timed",
                variant="other",
                body=timed,
                conditions=[plait.Condition("x", "exists")],
            ),
        ]
    )
    planner = plait.Planner(recipes, engine=engine)
    first = planner.plan("timed", {"until": START.isoformat()})
    assert first.estimate().note == "no history: no succeeded run of recipe 'timed-default' yet"
    assert first.estimate().p50_duration_seconds is None

    durations = [7, 3, 15, 2, 40, 9, 11, 5, 6, 8, 21, 1, 13, 4, 30, 12, 10, 16, 14, 25]
    calls = [n % 4 for n in range(20)]
    costs = [None if n % 5 == 0 else round(0.01 * (n + 1), 2) for n in range(20)]

    def run(recipe_input: dict[str, Any], seconds: float) -> plait.RunHandle[Any]:
        handle = engine.start(planner.plan("timed", recipe_input), recipe_input)
        engine.run_until_idle()
        clock.advance(timedelta(seconds=seconds))
        engine.run_until_idle()
        return handle

    for n in range(20):
        until = (clock.now() + timedelta(seconds=durations[n])).isoformat()
        handle = run({"until": until, "calls": calls[n], "cost_each": costs[n]}, durations[n])
        assert handle.status == "succeeded"
    # Neither a failed run of the recipe nor a run of another recipe counts.
    assert run({"until": clock.now().isoformat(), "fail": True}, 1000).status == "failed"
    other = run({"until": (clock.now() + timedelta(seconds=999)).isoformat(), "x": 1, "calls": 50}, 999)
    assert other.info().recipe == "timed-other"

    estimate = first.estimate()
    run_costs = [c * k for c, k in zip(costs, calls, strict=True) if c is not None and k > 0]
    assert estimate.runs == 20
    assert estimate.p50_duration_seconds == pytest.approx(by_hand_median([float(d) for d in durations])) == 10.5
    assert estimate.p50_llm_calls == by_hand_median([float(k) for k in calls]) == 1.5
    assert estimate.p50_cost == pytest.approx(by_hand_median(run_costs))
    assert estimate.has_history and "last 20 succeeded runs" in estimate.note


def lead_recipe(variant: str = "default", **extra: Any) -> plait.Recipe:
    body = plait.WorkflowDocument.parse(
        {
            "id": "leads-doc",
            "input": {"type": "object", "properties": {"email": {"type": "string"}}},
            "blocks": [
                {"id": "enrich", "type": "crm.enrich", "params": {"email": "{{input.email}}"}},
                {"id": "tally", "type": "math.count", "params": {"count": 1}},
                {"id": "notify", "type": "slack.send", "params": {"channel": "#s", "text": "{{enrich.name}}"}},
            ],
            "output": {"company": "{{enrich.name}}", "sent": "{{notify.text}}"},
        }
    )
    return plait.Recipe(id=f"leads-{variant}", workflow="leads", variant=variant, body=body, **extra)


def test_stored_recipes_let_an_api_process_plan_what_a_worker_runs(db_url: str) -> None:
    with (
        plait.Engine(db_url, worker=False) as api,
        plait.Engine(db_url, secrets={"SLACK_TOKEN": SECRET}, poll_interval=0.05) as worker,
    ):
        api.register(enrich, slack, count)
        worker.register(enrich, slack, count)
        api.save_recipe(lead_recipe(tags=["docs"]))
        api.save_recipe(lead_recipe("vip", conditions=[plait.Condition("email", "matches", "@vip\\.")], priority=5))
        with pytest.raises(plait.PlanError, match="cannot be stored"):
            api.save_recipe(RECIPES.variant("data.pipeline", "fast"))

        # The worker reads the same recipes (and can run their bodies) without any code of its own.
        assert [r.id for r in worker.recipes()] == ["leads-default", "leads-vip"]
        planner = api.planner()
        assert planner.select("leads", {"email": "a@vip.example"}).recipe.variant == "vip"
        plan = planner.plan("leads", {"email": "a@example.com"}, plait.PlanHints(skip_steps=["tally"]))
        handle = api.start(plan, {"email": "a@example.com"})
        worker.recipes()
        worker.run_until_idle()
        assert worker.get_run(handle.id).result(timeout=30) == {"company": "Example", "sent": "Example"}
        assert {s.step_id: s.status for s in worker.get_run(handle.id).steps()}["tally"] == "skipped"
        assert api.get_run(handle.id).info().variant == "default"

        # Saving again replaces; deleting removes.
        api.save_recipe(lead_recipe(priority=50))
        assert worker.recipes().variant("leads", "default").priority == 50
        assert worker.planner().select("leads", {"email": "a@vip.example"}).recipe.variant == "default"
        assert api.delete_recipe("leads-vip") and not api.delete_recipe("leads-vip")
        assert worker.recipes().variants("leads") == ["default"]
