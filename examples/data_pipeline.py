"""Recipes and the planner: one logical workflow, three variants chosen by rules on the input.

``data.pipeline`` has a ``default`` recipe, a ``fast`` one for small jobs and a
``thorough`` one (higher priority) for large jobs. The planner picks the recipe,
explains why, skips steps on request (refusing a skip a later step cannot live
with), and estimates a recipe from the history of its runs.
"""

from pydantic import BaseModel

import plait


class Job(BaseModel):
    size: str
    values: list[float]


class Rows(BaseModel):
    values: list[float]


class Scored(Rows):
    scores: list[float]


class Report(BaseModel):
    count: int
    total: float


@plait.step
def load(job: Job) -> Rows:
    return Rows(values=job.values)


@plait.step
def clean(rows: Rows) -> Rows:
    return Rows(values=[v for v in rows.values if v >= 0])


@plait.step
def score(rows: Rows) -> Scored:
    return Scored(values=rows.values, scores=[round(v / 10, 2) for v in rows.values])


@plait.step
def summarize(rows: Rows) -> Report:
    return Report(count=len(rows.values), total=sum(rows.values))


@plait.step
def summarize_scored(rows: Scored) -> Report:
    return Report(count=len(rows.values), total=sum(rows.values) + sum(rows.scores))


standard = plait.workflow("data.pipeline.standard", input=Job).then(load).then(clean).then(summarize).commit()
quick = plait.workflow("data.pipeline.quick", input=Job).then(load).then(summarize).commit()
deep = (
    plait.workflow("data.pipeline.deep", input=Job).then(load).then(clean).then(score).then(summarize_scored).commit()
)

RECIPES = plait.Recipes(
    [
        plait.Recipe(id="pipeline-default", workflow="data.pipeline", variant="default", body=standard),
        plait.Recipe(
            id="pipeline-fast",
            workflow="data.pipeline",
            variant="fast",
            body=quick,
            conditions=[plait.Condition("size", "eq", "small")],
            priority=10,
            tags=["cheap"],
        ),
        plait.Recipe(
            id="pipeline-thorough",
            workflow="data.pipeline",
            variant="thorough",
            body=deep,
            conditions=[plait.Condition("size", "eq", "large")],
            priority=20,
        ),
    ]
)

if __name__ == "__main__":
    with plait.Engine("sqlite:///plait-pipeline.db") as engine:
        planner = plait.Planner(RECIPES, engine=engine)
        for size in ("small", "large", "medium"):
            print(f"{size}: {planner.select('data.pipeline', {'size': size, 'values': []}).reason}")

        job = {"size": "large", "values": [4.0, -1.0, 10.0]}
        plan = planner.plan("data.pipeline", job, hints=plait.PlanHints(skip_steps=["clean"]))
        print("modifications:", plan.modifications)
        run = engine.start(plan, job)
        print(f"run {run.info().variant}: {run.result(timeout=30)}")
        print("steps:", [(s.step_id, s.status) for s in run.steps()])

        try:
            planner.plan("data.pipeline", job, hints=plait.PlanHints(skip_steps=["score"]))
        except plait.PlanError as exc:
            print("refused:", exc.message)

        before = planner.plan("data.pipeline", {"size": "small", "values": [1.0]}).estimate()
        print("before any fast run:", before.note)
        for n in range(3):
            small = {"size": "small", "values": [float(n)]}
            engine.start(planner.plan("data.pipeline", small), small).result(timeout=30)
        after = planner.plan("data.pipeline", {"size": "small", "values": [1.0]}).estimate()
        listed = engine.list_runs(recipe="pipeline-fast").items
        print(f"after: {after.runs} runs of {after.recipe}; {len(listed)} listed")
