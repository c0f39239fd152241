"""Building and committing workflows: validation, plan shape, versions. No I/O."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

import plait


class Item(BaseModel):
    sku: str


@plait.step
def parse(text: str) -> Item:
    return Item(sku=text)


@plait.step
def label(item: Item) -> str:
    return item.sku.upper()


def test_step_reads_types_and_options_from_the_function() -> None:
    @plait.step(id="charge_card", retry=plait.Retry(max_attempts=4), timeout=2.5, on_error="skip", queue="billing")
    async def charge(ctx: plait.Context, item: Item) -> int:
        """Charge for one item."""
        return 1

    assert charge.id == "charge_card"
    assert charge.input_type is Item
    assert charge.output_type is int
    assert charge.takes_context and charge.is_async
    assert charge.options.retry.max_attempts == 4
    assert charge.options.timeout == 2.5
    assert charge.description == "Charge for one item."


def test_create_step_is_the_explicit_form() -> None:
    doubled = plait.create_step(id="double", input=int, output=int, execute=lambda ctx, x: x * 2)
    assert (doubled.id, doubled.input_type, doubled.output_type) == ("double", int, int)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": "bad id"}, "not valid"),
        ({"on_error": "explode"}, "on_error"),
        ({"timeout": 0}, "timeout must be positive"),
    ],
)
def test_bad_step_options_are_rejected_with_the_step_named(kwargs: dict[str, Any], message: str) -> None:
    def identity(x: int) -> int:
        return x

    with pytest.raises(plait.WorkflowDefinitionError, match=message):
        plait.step(**kwargs)(identity)


def test_step_with_three_parameters_is_rejected() -> None:
    def three(a: int, b: int, c: int) -> int:
        return a

    with pytest.raises(plait.WorkflowDefinitionError, match="'three' must take"):
        plait.step(three)  # type: ignore[arg-type]


def test_retry_policy_backs_off_and_caps() -> None:
    policy = plait.Retry(max_attempts=6, initial=1, backoff=2, max_delay=5, jitter=0)
    assert [policy.delay_before(n) for n in range(2, 7)] == [1, 2, 4, 5, 5]
    jittered = plait.Retry(initial=10, jitter=0.5)
    assert all(5 <= jittered.delay_before(2) <= 15 for _ in range(50))
    with pytest.raises(plait.WorkflowDefinitionError):
        plait.Retry(max_attempts=0)


def test_empty_workflow_is_rejected() -> None:
    with pytest.raises(plait.WorkflowDefinitionError, match="has no steps"):
        plait.workflow("empty", input=str).commit()


def test_duplicate_step_id_names_the_step() -> None:
    with pytest.raises(plait.WorkflowDefinitionError, match="step id 'label' is used twice") as caught:
        plait.workflow("dup", input=str).then(parse).then(label).map(lambda s: Item(sku=s)).then(label)
    assert caught.value.step_id == "label"


def test_output_type_mismatch_names_the_last_step() -> None:
    with pytest.raises(plait.WorkflowDefinitionError, match="last step 'parse' returns Item") as caught:
        plait.workflow("mismatch", input=str, output=int).then(parse).commit()
    assert caught.value.step_id == "parse"


def test_invalid_workflow_id_and_non_steps_are_rejected() -> None:
    with pytest.raises(plait.WorkflowDefinitionError, match="workflow id"):
        plait.workflow("has space", input=str)
    with pytest.raises(plait.WorkflowDefinitionError, match="expects a step"):
        plait.workflow("w", input=str).then(print)  # type: ignore[arg-type]
    with pytest.raises(plait.WorkflowDefinitionError, match="at least two"):
        plait.workflow("w", input=str).parallel(parse)
    with pytest.raises(plait.WorkflowDefinitionError, match="concurrency"):
        plait.workflow("w", input=list[str]).foreach(parse, concurrency=0)


def test_plan_serializes_to_json_and_mermaid() -> None:
    flow = plait.workflow("shop", input=str, output=str, description="Label an item").then(parse).then(label).commit()
    plan = json.loads(flow.to_json())
    assert plan["id"] == "shop"
    assert plan["version"] == flow.version
    assert [n["id"] for n in plan["nodes"]] == ["parse", "label"]
    assert plan["nodes"][0]["task"]["output"] == "Item"
    assert plan["input_schema"] == {"type": "string"}
    mermaid = flow.to_mermaid()
    assert mermaid.startswith("flowchart TD")
    assert "parse --> label" in mermaid


def test_content_hash_is_the_default_version_and_tracks_the_shape() -> None:
    def build(*steps: plait.Step[Any, Any]) -> plait.Workflow[Any, Any]:
        builder: Any = plait.workflow("versioned", input=str)
        for s in steps:
            builder = builder.then(s)
        return builder.commit()  # type: ignore[no-any-return]

    assert build(parse, label).version == build(parse, label).version
    assert build(parse, label).version != build(parse).version
    assert build(parse, label.with_options(id="other")).version != build(parse, label).version
    pinned = plait.workflow("versioned", input=str, version="v2").then(parse).commit()
    assert pinned.version == "v2"


def test_every_primitive_appears_in_the_plan() -> None:
    @plait.step
    def words(text: str) -> list[str]:
        return text.split()

    @plait.step
    def size(word: str) -> int:
        return len(word)

    @plait.step
    def total(sizes: list[int]) -> int:
        return sum(sizes)

    @plait.step
    def top(sizes: list[int]) -> int:
        return max(sizes)

    @plait.step
    def halve(x: int) -> int:
        return x // 2

    child = plait.workflow("child", input=int).then(halve.with_options(id="c")).commit()
    flow = (
        plait.workflow("all", input=str)
        .then(words)
        .foreach(size, concurrency=2)
        .parallel(total, top)
        .map(lambda pair: pair[0], output=int)
        .dountil(halve, lambda x: x < 3)
        .branch((lambda x: x > 1, halve.with_options(id="b1")), default=halve.with_options(id="b2"))
        .then(child)
        .commit()
    )
    kinds = [n["kind"] for n in flow.to_dict()["nodes"]]
    assert kinds == ["step", "foreach", "parallel", "map", "loop", "branch", "step"]
    assert flow.to_dict()["nodes"][-1]["task"] == {
        "type": "workflow",
        "id": "child",
        "workflow": "child",
        "version": child.version,
    }
    assert "-->|default| b2" in flow.to_mermaid()
