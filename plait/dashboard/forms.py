"""Forms generated from JSON schemas (a workflow's input, an approval's data), and reading them back.

An object whose properties are all plain values (text, numbers, booleans,
choices) becomes one field per property; anything else becomes a JSON text
area. Either way the engine validates the value, so a bad one is reported
with the schema's own message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from plait.errors import InputValidationError

PLAIN = {"string", "integer", "number", "boolean"}


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "string" | "integer" | "number" | "boolean" | "choice"
    required: bool
    title: str
    description: str
    default: Any
    choices: list[Any]


@dataclass(frozen=True)
class SchemaForm:
    """Either ``fields`` (one per property) or a JSON text area (``fields`` is None)."""

    fields: list[Field] | None
    example: str


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved: dict[str, Any] = root.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})
        return resolved
    return schema


def _field(name: str, prop: dict[str, Any], root: dict[str, Any], required: bool) -> Field | None:
    prop = _resolve(prop, root)
    options = prop.get("anyOf")
    if isinstance(options, list):  # Optional[X] is anyOf [X, null]
        concrete = [_resolve(o, root) for o in options if o.get("type") != "null"]
        if len(concrete) != 1:
            return None
        prop = {**concrete[0], **{k: v for k, v in prop.items() if k != "anyOf"}}
    title, description = str(prop.get("title", name)), str(prop.get("description", ""))
    if "enum" in prop:
        return Field(name, "choice", required, title, description, prop.get("default"), list(prop["enum"]))
    kind = prop.get("type")
    if kind not in PLAIN:
        return None
    return Field(name, str(kind), required, title, description, prop.get("default"), [])


def schema_form(schema: dict[str, Any]) -> SchemaForm:
    root = schema
    schema = _resolve(schema, root)
    example = json.dumps(_example(schema, root), indent=2)
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        return SchemaForm(None, example)
    required = set(schema.get("required", []))
    fields = [_field(name, prop, root, name in required) for name, prop in schema["properties"].items()]
    if any(f is None for f in fields):
        return SchemaForm(None, example)
    return SchemaForm([f for f in fields if f is not None], example)


def _example(schema: dict[str, Any], root: dict[str, Any]) -> Any:
    schema = _resolve(schema, root)
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type")
    if kind == "object":
        return {k: _example(v, root) for k, v in schema.get("properties", {}).items()}
    return {"string": "", "integer": 0, "number": 0, "boolean": False, "array": []}.get(str(kind))


def read_form(form: SchemaForm, values: dict[str, str]) -> Any:
    """The value a submitted form describes; raises InputValidationError for text that is not a value."""
    if form.fields is None:
        text = values.get("json", "").strip()
        try:
            return json.loads(text) if text else None
        except json.JSONDecodeError as exc:
            raise InputValidationError(f"the JSON is not valid: {exc.msg} at line {exc.lineno}") from exc
    data: dict[str, Any] = {}
    for field in form.fields:
        raw = values.get(f"f.{field.name}")
        if field.kind == "boolean":
            data[field.name] = raw == "on"
            continue
        if raw is None or (raw == "" and not field.required):
            continue
        data[field.name] = _coerce(field, raw)
    return data


def _coerce(field: Field, raw: str) -> Any:
    if field.kind == "choice":
        for choice in field.choices:
            if str(choice) == raw:
                return choice
        return raw
    try:
        if field.kind == "integer":
            return int(raw)
        if field.kind == "number":
            return float(raw)
    except ValueError as exc:
        raise InputValidationError(f"{field.title!r} must be a {field.kind}, not {raw!r}") from exc
    return raw
