"""apply_ops: every op, every skip code, and the hostile inputs an LLM (or an attacker) sends."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

import plait
from tests.document_kit import lead_document, registry

EMPTY: dict[str, Any] = {
    "id": "lead-notifier",
    "input": {"type": "object", "properties": {"email": {"type": "string"}}},
}


def apply(doc: Any, ops: Any, **kwargs: Any) -> plait.PatchResult:
    return plait.apply_ops(doc, ops, registry(), **kwargs)


def codes(result: plait.PatchResult) -> list[tuple[int, str]]:
    return [(s.index, s.code) for s in result.skipped]


def test_each_op_applies_and_the_input_document_is_untouched() -> None:
    doc = lead_document()
    before = copy.deepcopy(doc)
    result = apply(
        doc,
        [
            {"op": "add_block", "id": "tally", "type": "math.count", "params": {"count": "{{enrich.score}}"}},
            {"op": "update_block", "id": "notify", "params": {"channel": "#leads"}},
            {"op": "connect", "from": "tally", "to": "notify"},
            {"op": "set_var", "name": "region", "value": "eu"},
            {"op": "set_input", "schema": {"type": "object", "properties": {"email": {"type": "string"}, "n": {}}}},
            {"op": "set_output", "value": {"total": "{{tally.total}}"}},
            {"op": "disconnect", "from": "tally", "to": "notify"},
            {"op": "add_block", "id": "spare", "type": "math.count", "params": {"count": 1}},
            {"op": "remove_block", "id": "spare"},
            {"op": "rename_block", "id": "enrich", "new_id": "lookup"},
        ],
    )
    assert result.skipped == [] and result.applied == list(range(10))
    assert doc == before
    new = result.document
    blocks = {b.id: b for b in new.blocks}
    assert list(blocks) == ["lookup", "notify", "tally"]
    assert blocks["notify"].params == {"channel": "#leads", "text": "Lead {{lookup.name}} in {{lookup.address.city}}"}
    assert blocks["tally"].params == {"count": "{{lookup.score}}"}
    assert blocks["notify"].after == []
    assert new.vars == {"channel": "#sales", "region": "eu"}
    assert new.output == {"total": "{{tally.total}}"}
    assert result.problems == [] and "compiles" in result.summary
    registry().compile(new)


def test_rename_rewrites_after_edges_conditions_and_output() -> None:
    doc = lead_document()
    doc["blocks"][1]["after"] = ["enrich"]
    doc["blocks"][1]["when"] = {"ref": "{{enrich.score}}", "op": "gt", "value": 1}
    new = apply(doc, [{"op": "rename_block", "id": "enrich", "new_id": "e2"}]).document
    notify = new.blocks[1]
    assert notify.after == ["e2"] and notify.when is not None and notify.when.ref == "{{e2.score}}"
    assert new.output == {"company": "{{e2.name}}", "score": "{{e2.score}}", "sent": "{{notify.text}}"}


@pytest.mark.parametrize(
    ("op", "code"),
    [
        ("not an object", "malformed_op"),
        ({"id": "x"}, "malformed_op"),
        ({"op": "explode"}, "malformed_op"),
        ({"op": "add_block", "id": "x", "type": "math.count", "sneaky": 1}, "malformed_op"),
        ({"op": "add_block", "id": 5, "type": "math.count"}, "malformed_op"),
        (
            {"op": "add_block", "id": "x", "type": "math.count", "when": {"ref": "{{a.b}}", "op": "like"}},
            "malformed_op",
        ),
        ({"op": "add_block", "id": "x", "type": "nope.nope"}, "unknown_type"),
        ({"op": "add_block", "id": "enrich", "type": "math.count", "params": {"count": 1}}, "duplicate_id"),
        ({"op": "add_block", "id": "bad id", "type": "math.count"}, "invalid_id"),
        ({"op": "add_block", "id": "a" * 10_000, "type": "math.count"}, "invalid_id"),
        ({"op": "add_block", "id": "a\x07", "type": "math.count"}, "invalid_id"),
        ({"op": "update_block", "id": "ghost", "params": {}}, "block_not_found"),
        ({"op": "add_block", "id": "x", "type": "math.count", "params": {"count": -1}}, "invalid_params"),
        (
            {"op": "add_block", "id": "x", "type": "math.count", "params": {"count": "{{enrich.name}}"}},
            "invalid_params",
        ),
        (
            {"op": "add_block", "id": "x", "type": "slack.send", "params": {"channel": "c", "text": "t", "token": "s"}},
            "hidden_param",
        ),
        ({"op": "update_block", "id": "notify", "params": {"workspace": "other"}}, "user_only_param"),
        (
            {"op": "add_block", "id": "x", "type": "math.count", "params": {"count": "{{ghost.total}}"}},
            "unknown_reference",
        ),
        ({"op": "update_block", "id": "enrich", "params": {"email": "{{notify.text}}"}}, "reference_not_upstream"),
        ({"op": "add_block", "id": "x", "type": "math.count", "params": {"count": "{{enrich.scor}}"}}, "unknown_field"),
        ({"op": "connect", "from": "notify", "to": "enrich"}, "cycle"),
        ({"op": "connect", "from": "notify", "to": "notify"}, "cycle"),
        ({"op": "remove_block", "id": "enrich"}, "block_referenced"),
        ({"op": "remove_block", "id": "notify"}, "block_referenced"),
        ({"op": "set_var", "name": "big", "value": "x" * 2_000_000}, "too_large"),
        ({"op": "set_output", "value": "{{env.SECRET}}"}, "unknown_reference"),
        (
            {"op": "set_input", "schema": {"type": "object", "properties": {"mail": {"type": "string"}}}},
            "unknown_field",
        ),
        ({"op": "rename_block", "id": "enrich", "new_id": "notify"}, "duplicate_id"),
    ],
)
def test_every_skip_code(op: Any, code: str) -> None:
    doc = lead_document()
    result = apply(doc, [op])
    assert codes(result) == [(0, code)], result.summary
    assert result.applied == []
    assert result.document.to_data() == plait.WorkflowDocument.parse(doc).to_data()  # a skipped op changes nothing
    assert result.skipped[0].reason and f"[{code}]" in result.summary
    assert len(result.summary) < 5000


def test_version_conflict_and_too_many_ops() -> None:
    doc = plait.WorkflowDocument.parse(lead_document())
    stale = apply(doc, [{"op": "set_var", "name": "a", "value": 1}], expected_version="0123")
    assert codes(stale) == [(0, "version_conflict")]
    fresh = apply(doc, [{"op": "set_var", "name": "a", "value": 1}], expected_version=doc.content_hash())
    assert fresh.applied == [0]
    flood = apply(doc, [{"op": "set_var", "name": f"v{i}", "value": i} for i in range(1000)])
    assert {s.code for s in flood.skipped} == {"too_large"} and len(flood.skipped) == 1000
    assert flood.applied == [] and "at most 500" in flood.summary


def test_user_only_params_may_be_set_by_people() -> None:
    op = {"op": "update_block", "id": "notify", "params": {"workspace": "other"}}
    assert apply(lead_document(), [op], actor="user").applied == [0]
    # ...and an LLM editing other params of that block later does not trip over it.
    person = apply(lead_document(), [op], actor="user").document
    assert apply(person, [{"op": "update_block", "id": "notify", "params": {"channel": "#x"}}]).applied == [0]


SECRET_VALUE = "xoxb-never-echo-me"


@pytest.mark.parametrize(
    "params",
    [
        {"channel": "c", "text": "t", "token": SECRET_VALUE},
        {"channel": "c", "text": "t", "TOKEN": SECRET_VALUE},
        {"channel": "c", "text": "t", "Slack_Token": SECRET_VALUE},
        {"channel": "c", "text": {"nested": [{"tOkEn": SECRET_VALUE}]}},
    ],
)
@pytest.mark.parametrize("actor", ["llm", "user"])
def test_a_hidden_value_is_never_echoed(params: dict[str, Any], actor: str) -> None:
    ops = [
        {"op": "add_block", "id": "x", "type": "slack.send", "params": params},
        {"op": "update_block", "id": "notify", "params": params},
    ]
    result = apply(lead_document(), ops, actor=actor)
    assert codes(result) == [(0, "hidden_param"), (1, "hidden_param")]
    everything = result.model_dump_json() + result.summary + json.dumps([s.model_dump() for s in result.skipped])
    assert SECRET_VALUE not in everything
    assert "[hidden]" in json.dumps(result.skipped[0].op)


def test_later_ops_see_earlier_applied_ones_and_skipped_ones_change_nothing() -> None:
    result = apply(
        EMPTY,
        [
            {"op": "add_block", "id": "a", "type": "math.count", "params": {"count": 1}},
            {"op": "add_block", "id": "b", "type": "math.count", "params": {"count": "{{zz.total}}"}},
            {"op": "add_block", "id": "b", "type": "math.count", "params": {"count": "{{a.total}}"}},
        ],
    )
    assert result.applied == [0, 2] and codes(result) == [(1, "unknown_reference")]
    assert [b.id for b in result.document.blocks] == ["a", "b"]


def test_the_llm_round_trip() -> None:
    """Empty document, a batch with good and bad ops, the summary sent back, a fix-up batch, then it compiles."""
    first = apply(
        EMPTY,
        [
            {"op": "add_block", "id": "enrich", "type": "crm.enrich", "params": {"email": "{{input.email}}"}},
            {
                "op": "add_block",
                "id": "notify",
                "type": "slack.send",
                "params": {"channel": "#s", "text": "{{enrich.nme}}"},
            },
            {"op": "add_block", "id": "tweet", "type": "twitter.post", "params": {}},
            {"op": "set_var", "name": "greeting", "value": "Hello"},
            {"op": "set_output", "value": {"name": "{{enrich.name}}"}},
            {
                "op": "add_block",
                "id": "n2",
                "type": "slack.send",
                "params": {"channel": "#s", "text": "t", "token": "xoxb-sneaky"},
            },
        ],
    )
    assert first.applied == [0, 3, 4]
    assert codes(first) == [(1, "unknown_field"), (2, "unknown_type"), (5, "hidden_param")]
    summary = first.summary
    assert "3 of 6 operations applied, 3 skipped" in summary
    assert "#1 add_block 'notify' [unknown_field]" in summary and "its fields: name, score, address, tags" in summary
    assert "#2 add_block 'tweet' [unknown_type]" in summary and "crm.enrich" in summary
    assert "xoxb-sneaky" not in summary
    fixed = apply(
        first.document,
        [
            {
                "op": "add_block",
                "id": "notify",
                "type": "slack.send",
                "params": {"channel": "#s", "text": "{{vars.greeting}} {{enrich.name}}"},
            },
            {"op": "set_output", "value": {"name": "{{enrich.name}}", "sent": "{{notify.text}}"}},
        ],
    )
    assert fixed.applied == [0, 1] and fixed.problems == []
    flow = registry().compile(fixed.document)
    assert [t.id for t in flow.iter_steps()] == ["enrich", "notify"]


def test_catalog_and_tools_never_show_hidden_params() -> None:
    catalog = registry(env=["APP_URL"]).describe()
    text = json.dumps(catalog)
    slack = next(c for c in catalog["connectors"] if c["type"] == "slack.send")
    assert set(slack["params"]["properties"]) == {"channel", "text", "workspace"}
    assert slack["params"]["properties"]["workspace"]["x-plait-user-only"] is True
    assert "token" not in text.lower().replace("tokens", "") and "SLACK_TOKEN" not in text
    assert {b["type"] for b in catalog["builtin_blocks"]} == {"wait.duration", "wait.event", "wait.approval"}
    assert set(catalog["ops"]) == {
        "add_block", "update_block", "remove_block", "rename_block", "connect", "disconnect", "set_input",
        "set_var", "set_output",
    }  # fmt: skip
    assert catalog["env"] == ["APP_URL"]
    openai = registry().llm_tools(format="openai")
    assert openai[0]["type"] == "function" and openai[0]["function"]["name"] == "apply_ops"
    anthropic = registry().llm_tools(format="anthropic")
    assert anthropic[0]["name"] == "apply_ops" and anthropic[0]["input_schema"]["required"] == ["ops"]
    assert "SLACK_TOKEN" not in json.dumps(openai + anthropic)
