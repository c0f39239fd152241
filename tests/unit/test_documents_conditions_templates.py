"""The `when` operators and template rendering: pure functions over JSON data."""

from __future__ import annotations

import pytest

from plait.documents.conditions import OPERATORS, evaluate
from plait.documents.templates import Reference, find_templates, rename_root, render


@pytest.mark.parametrize(
    ("op", "left", "right", "holds"),
    [
        ("eq", 1, 1.0, True),
        ("eq", True, 1, False),
        ("neq", "a", "b", True),
        ("gt", 51, 50, True),
        ("gt", "51", 50, False),  # a string never compares with a number
        ("gte", 50, 50, True),
        ("lt", None, 5, False),  # a missing value compares false, never raises
        ("lte", "a", "b", True),
        ("contains", "hello world", "world", True),
        ("contains", ["a", "b"], "b", True),
        ("contains", {"k": 1}, "k", True),
        ("contains", 5, 5, False),
        ("matches", "order-123", r"^order-\d+$", True),
        ("matches", "x", "(", False),  # an invalid pattern is false, not an error
        ("exists", 0, None, True),
        ("exists", None, None, False),
        ("not_exists", None, None, True),
    ],
)
def test_evaluate(op: str, left: object, right: object, holds: bool) -> None:
    assert evaluate(op, left, right) is holds


def test_every_operator_is_known_and_unknown_ones_raise() -> None:
    assert set(OPERATORS) == {"eq", "neq", "gt", "gte", "lt", "lte", "contains", "matches", "exists", "not_exists"}
    with pytest.raises(ValueError, match="unknown condition operator"):
        evaluate("like", 1, 1)


def resolver(data: dict[str, object]):  # type: ignore[no-untyped-def]
    def resolve(ref: Reference) -> object:
        value = data.get(ref.root)
        for part in ref.path:
            value = value.get(part) if isinstance(value, dict) else None
        return value

    return resolve


def test_a_whole_template_keeps_its_type_and_text_templates_render_as_text() -> None:
    resolve = resolver({"enrich": {"score": 80, "tags": ["a"], "name": "Acme"}, "input": {"n": None}})
    assert render("{{enrich.score}}", resolve) == 80
    assert render("{{ enrich.tags }}", resolve) == ["a"]
    assert render("Score {{enrich.score}} for {{enrich.name}}{{input.n}}", resolve) == "Score 80 for Acme"
    assert render({"a": ["{{enrich.name}}"], "__class__": "{{enrich.score}}"}, resolve) == {
        "a": ["Acme"],
        "__class__": 80,
    }


def test_rendered_values_are_never_rendered_again() -> None:
    resolve = resolver({"event": {"text": "{{env.SECRET}}"}, "env": {"SECRET": "leak"}})
    assert render("got {{event.text}}", resolve) == "got {{env.SECRET}}"
    assert render("{{event.text}}", resolve) == "{{env.SECRET}}"


def test_paths_read_json_keys_never_attributes() -> None:
    resolve = resolver({"enrich": {"name": "Acme"}})
    assert render("{{enrich.__class__}}", resolve) is None
    assert render("{{enrich.name.__len__}}", resolve) is None


def test_find_and_rename_references() -> None:
    value = {"t": "Hi {{enrich.name}} {{enrichment.x}}", "n": ["{{enrich}}"], "bad": "{{ not a ref }}"}
    found = list(find_templates(value, "params"))
    assert {(f.where, f.reference.root if f.reference else None) for f in found} == {
        ("params.t", "enrich"),
        ("params.t", "enrichment"),
        ("params.n[0]", "enrich"),
        ("params.bad", None),
    }
    assert rename_root(value, "enrich", "lookup") == {
        "t": "Hi {{lookup.name}} {{enrichment.x}}",
        "n": ["{{lookup}}"],
        "bad": "{{ not a ref }}",
    }
