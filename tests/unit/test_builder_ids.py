"""Step ids are unique in a workflow: repeats are refused, automatic ids never collide. No I/O."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

import plait


@plait.step
def one(x: int) -> int:
    return 1


also_one = plait.create_step(id="one", input=int, output=int, execute=lambda ctx, x: 2)


@plait.step
def two(x: int) -> int:
    return 2


class Paid(BaseModel):
    amount: int


class Shipped(BaseModel):
    carrier: str


def node_ids(flow: plait.Workflow[Any, Any]) -> list[str]:
    return [node["id"] for node in flow.to_dict()["nodes"]]


@pytest.mark.parametrize("second", [one, also_one], ids=["same_step", "same_id"])
def test_a_step_id_twice_in_one_parallel_is_refused_naming_it(second: plait.Step[int, int]) -> None:
    with pytest.raises(plait.WorkflowDefinitionError, match="step id 'one' is used twice") as caught:
        plait.workflow("dup_parallel", input=int).parallel(one, second).commit()
    assert caught.value.step_id == "one"


def test_a_branch_may_name_the_same_step_twice_but_not_two_steps_of_one_id() -> None:
    flow = plait.workflow("same_outcome", input=int).branch((lambda x: x > 0, one), default=one).commit()
    assert [t.id for t in flow.iter_steps()] == ["one", "one"]
    with pytest.raises(plait.WorkflowDefinitionError, match="'one' is used twice"):
        plait.workflow("two_outcomes", input=int).branch((lambda x: x > 0, one), default=also_one)


def test_automatic_ids_never_collide() -> None:
    def double(x: int) -> int:
        return x * 2

    flow = (
        plait.workflow("auto_ids", input=str)
        .wait_for_event("update", schema=Paid)
        .wait_for_event("update", schema=Shipped)
        .wait_for_event("update", schema=Paid)
        .map(lambda shipped: 1, output=int)
        .map(double)
        .map(double)
        .commit()
    )
    assert node_ids(flow) == ["wait_update", "wait_update-2", "wait_update-3", "map_4", "double", "double-2"]
    schemas = [node["schema"] for node in flow.to_dict()["nodes"][:3]]
    assert schemas == ["Paid", "Shipped", "Paid"]


def test_an_id_the_user_gives_twice_is_still_refused() -> None:
    with pytest.raises(plait.WorkflowDefinitionError, match="'paid' is used twice"):
        (
            plait.workflow("given_ids", input=str)
            .wait_for_event("update", schema=Paid, id="paid")
            .wait_for_event("update", schema=Paid, id="paid")
        )
    with pytest.raises(plait.WorkflowDefinitionError, match="'one' is used twice"):
        plait.workflow("step_then_map", input=int).then(one).map(lambda x: x, id="one")


def test_unchanged_workflows_keep_their_ids_and_version() -> None:
    flow = plait.workflow("stable", input=int).then(one).wait_for_event("go", schema=Paid).commit()
    assert node_ids(flow) == ["one", "wait_go"]
    assert flow.version == "cd885bf0a7236ffc"  # the hash before automatic ids learned to avoid collisions
