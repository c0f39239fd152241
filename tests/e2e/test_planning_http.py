"""A run started from a plan shows its recipe and variant through the API, on a real server."""

from __future__ import annotations

import httpx

import plait
from plait.http import create_app
from tests.e2e.servers import serving
from tests.pipeline_kit import RECIPES, quick


def test_the_api_shows_the_recipe_and_variant_of_a_run(db_url: str) -> None:
    with plait.Engine(db_url) as engine:
        job = {"size": "small", "values": [1.0]}
        planned = engine.start(plait.Planner(RECIPES).plan("data.pipeline", job), job)
        plain = engine.start(quick, job)
        planned.result(timeout=30)
        with serving(create_app(engine)) as url, httpx.Client(base_url=url, timeout=30) as http:
            run = http.get(f"/api/runs/{planned.id}").json()["run"]
            assert (run["recipe"], run["variant"]) == ("pipeline-fast", "fast")
            other = http.get(f"/api/runs/{plain.id}").json()["run"]
            assert (other["recipe"], other["variant"]) == (None, None)
