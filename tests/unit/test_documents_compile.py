"""Compiling documents: every problem at once, with its path; never a partial workflow."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

import plait
from plait.documents.compile import waves
from plait.documents.validation import DocumentView
from tests.document_kit import EnrichParams, count, enrich, lead_document, registry, slack


def problems_of(doc: Any, **kwargs: Any) -> list[tuple[str, str]]:
    with pytest.raises(plait.DocumentInvalid) as caught:
        registry(**kwargs).compile(doc)
    assert caught.value.code == "document.invalid"
    return [(p["path"], p["code"]) for p in caught.value.problems]


def test_a_valid_document_compiles_to_an_ordinary_workflow_versioned_by_its_content() -> None:
    flow = registry().compile(lead_document())
    assert isinstance(flow, plait.Workflow)
    assert flow.id == "lead-notifier"
    assert [t.id for t in flow.iter_steps()] == ["enrich", "notify"]
    assert flow.version == plait.WorkflowDocument.parse(lead_document()).content_hash()
    changed = lead_document(vars={"channel": "#leads"})
    assert registry().compile(changed).version != flow.version


def test_every_problem_is_reported_with_its_path() -> None:
    doc = lead_document(
        blocks=[
            {"id": "enrich", "type": "crm.enrich", "params": {"email": "{{input.mail}}", "extra": 1}},
            {"id": "enrich", "type": "crm.enrich", "params": {"email": "x"}},
            {"id": "notify", "type": "slak.send", "params": {}},
            {
                "id": "post",
                "type": "slack.send",
                "params": {"channel": "{{vars.chanel}}", "text": "{{enrich.nam}} {{ghost.x}} {{env.SECRET}}"},
            },
            {"id": "n", "type": "math.count", "params": {"count": "{{enrich.name}}"}},
            {"id": "m", "type": "math.count", "params": {"count": -1}, "after": ["nowhere"]},
            {"id": "bad id!", "type": "math.count", "params": {"count": 1}},
        ],
        output="{{post.text}} {{missing.x}}",
    )
    found = problems_of(doc)
    assert found == [
        ("blocks[1].id", "duplicate_id"),
        ("blocks[0].params.extra", "invalid_params"),
        ("blocks[0].params.email", "unknown_field"),
        ("blocks[1].type", "unknown_type"),
        ("blocks[2].params.channel", "unknown_field"),
        ("blocks[2].params.text", "unknown_field"),
        ("blocks[2].params.text", "unknown_reference"),
        ("blocks[2].params.text", "unknown_reference"),
        ("blocks[3].params.count", "invalid_params"),
        ("blocks[4].params.count", "invalid_params"),
        ("blocks[4].after[0]", "unknown_reference"),
        ("blocks[5].id", "invalid_id"),
        ("output", "unknown_reference"),
    ]


def test_the_message_lists_every_problem_and_never_a_hidden_value() -> None:
    doc = lead_document()
    doc["blocks"][1]["params"]["Token"] = "xoxb-leaked"
    doc["blocks"][1]["params"]["channel"] = "{{nope.x}}"
    with pytest.raises(plait.DocumentInvalid) as caught:
        registry().compile(doc)
    message = str(caught.value)
    assert "blocks[1].params.Token" in message and "hidden_param" in message
    assert "blocks[1].params.channel" in message and "unknown_reference" in message
    assert "xoxb-leaked" not in message + json.dumps(caught.value.problems)


@pytest.mark.parametrize("key", ["token", "TOKEN", "Token", "slack_token", "SLACK-TOKEN"])
def test_hidden_params_are_refused_in_any_case_and_nested(key: str) -> None:
    doc = lead_document()
    doc["blocks"][1]["params"][key] = "x"
    assert ("blocks[1].params." + key, "hidden_param") in problems_of(doc)
    nested = lead_document()
    nested["blocks"][1]["params"]["text"] = {"inner": [{key: "x"}]}
    assert ("blocks[1].params.text[inner][0]".replace("[inner]", ".inner") + "." + key, "hidden_param") in problems_of(
        nested
    )


def test_cycles_self_loops_and_downstream_references() -> None:
    def block(block_id: str, after: list[str], text: str = "x") -> dict[str, Any]:
        return {"id": block_id, "type": "math.count", "params": {"count": 1, "label": text}, "after": after}

    assert ("blocks[0].after[0]", "cycle") in problems_of(lead_document(blocks=[block("a", ["a"])], output=None))
    three = problems_of(lead_document(blocks=[block("a", ["c"]), block("b", ["a"]), block("c", ["b"])], output=None))
    assert {code for _, code in three} == {"cycle"} and len(three) == 3
    downstream = [block("a", [], "n={{b.total}}"), block("b", [], "n={{a.total}}")]
    codes = problems_of(lead_document(blocks=downstream, output=None))
    assert codes == [
        ("blocks[0].params.label", "reference_not_upstream"),
        ("blocks[1].params.label", "reference_not_upstream"),
    ]
    self_ref = problems_of(lead_document(blocks=[block("a", [], "n={{a.total}}")], output=None))
    assert self_ref == [("blocks[0].params.label", "reference_not_upstream")]


def test_ids_that_are_huge_or_hold_control_characters_are_refused_and_not_echoed() -> None:
    huge = "a" * 10_000
    doc = lead_document(blocks=[{"id": huge, "type": "math.count", "params": {"count": 1}}], output=None)
    with pytest.raises(plait.DocumentInvalid) as caught:
        registry().compile(doc)
    assert [p["code"] for p in caught.value.problems] == ["invalid_id"]
    assert len(str(caught.value)) < 1000
    for bad in ["a\x00b", "a\nb", "input", "a.b", "é"]:
        doc = lead_document(blocks=[{"id": bad, "type": "math.count", "params": {"count": 1}}], output=None)
        assert problems_of(doc) == [("blocks[0].id", "invalid_id")]


def test_dunder_keys_in_params_and_vars_are_plain_data() -> None:
    doc = lead_document(vars={"__class__": "#x", "__proto__": {"__init__": 1}, "channel": "#sales"})
    doc["blocks"][1]["params"]["text"] = {"__class__": "{{vars.__class__}}", "__init__": "{{vars.__proto__}}"}
    # text must be a string: the dict is refused as a value, the keys are never looked up as attributes.
    assert problems_of(doc) == [("blocks[1].params.text", "invalid_params")]
    ok = lead_document(vars={"__class__": "#x", "channel": "#sales"})
    ok["blocks"][1]["params"]["channel"] = "{{vars.__class__}}"
    registry().compile(ok)


def test_env_templates_need_the_allow_list() -> None:
    doc = lead_document()
    doc["blocks"][1]["params"]["text"] = "see {{env.APP_URL}}"
    assert problems_of(doc) == [("blocks[1].params.text", "unknown_reference")]
    registry(env=["APP_URL"]).compile(doc)


def test_a_ten_megabyte_document_is_too_large() -> None:
    doc = lead_document(vars={"blob": "x" * 10_000_000})
    assert problems_of(doc) == [("", "too_large")]
    with pytest.raises(plait.DocumentInvalid, match="too_large"):
        plait.WorkflowDocument.parse(json.dumps(doc))


def test_malformed_documents_are_refused_with_paths() -> None:
    with pytest.raises(plait.DocumentInvalid) as caught:
        plait.WorkflowDocument.parse({"id": "x", "blocks": [{"id": "a"}, "nope"], "extra": 1})
    assert {p["path"] for p in caught.value.problems} >= {"blocks[0].type", "blocks[1]", "extra"}


def test_builtin_waits_are_validated() -> None:
    blocks = [
        {"id": "w1", "type": "wait.duration", "params": {}},
        {"id": "w2", "type": "wait.duration", "params": {"until": "tomorrow"}},
        {"id": "w3", "type": "wait.event", "params": {"name": "paid", "schema": {"type": "weird"}}},
        {"id": "w4", "type": "wait.event", "params": {"name": "x"}, "when": {"ref": "{{input.email}}", "op": "exists"}},
        {"id": "w5", "type": "wait.approval", "params": {"schema": {"type": "object"}}},
    ]
    found = problems_of(lead_document(blocks=blocks, output=None))
    assert found == [
        ("blocks[0].params", "invalid_params"),
        ("blocks[1].params.until", "invalid_params"),
        ("blocks[2].params.schema.type", "invalid_params"),
        ("blocks[3].when", "invalid_params"),
    ]


def test_independent_blocks_share_a_wave() -> None:
    blocks = [
        {"id": "a", "type": "math.count", "params": {"count": 1}},
        {"id": "b", "type": "math.count", "params": {"count": 2}},
        {"id": "c", "type": "math.count", "params": {"count": "{{a.total}}"}},
        {"id": "d", "type": "math.count", "params": {"count": 1}, "after": ["b"]},
        {"id": "e", "type": "math.count", "params": {"count": "{{c.total}}"}, "after": ["d"]},
    ]
    doc = lead_document(blocks=blocks, output="{{e.total}}")
    assert waves(DocumentView(plait.WorkflowDocument.parse(doc).to_data())) == [["a", "b"], ["c", "d"], ["e"]]
    flow = registry().compile(doc)
    assert [n.kind for n in flow.nodes] == ["parallel", "parallel", "step", "map"]


class Lead(BaseModel):
    email: str


def test_the_python_builder_records_references() -> None:
    doc = (
        plait.document("lead-notifier", input=Lead)
        .block("enrich", enrich, lambda r: {"email": r.input.email})
        .block(
            "notify", slack, lambda r: {"channel": "#sales", "text": f"Lead {r.enrich.name} in {r.enrich.address.city}"}
        )
        .block("tally", count, lambda r: {"count": r.enrich.score})
        .output(lambda r: {"sent": r.notify.text})
        .build()
    )
    params = {b.id: b.params for b in doc.blocks}
    assert params["enrich"] == {"email": "{{input.email}}"}
    assert params["notify"]["text"] == "Lead {{enrich.name}} in {{enrich.address.city}}"
    assert params["tally"] == {"count": "{{enrich.score}}"}
    registry().compile(doc)
    with pytest.raises(plait.WorkflowDefinitionError, match="no field 'nam'"):
        plait.document("x", input=Lead).block("enrich", enrich, lambda r: {"email": r.input.email}).block(
            "n", slack, lambda r: {"channel": "c", "text": r.enrich.nam}
        )
    with pytest.raises(plait.WorkflowDefinitionError, match="no such block"):
        plait.document("x", input=Lead).block("n", slack, lambda r: {"channel": "c", "text": r.later.x})


def test_connectors_are_steps_usable_in_the_builder() -> None:
    flow = plait.workflow("direct", input=EnrichParams).then(enrich).commit()
    assert isinstance(enrich, plait.Step) and enrich.id == "crm.enrich"
    assert flow is not None
    # The stored input of a connector step never has a hidden field.
    assert "token" not in slack.input_codec.schema()["properties"]
