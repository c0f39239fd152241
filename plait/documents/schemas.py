"""The JSON Schema subset documents use for run input and event/approval payloads.

Supported: ``type`` (one or a list), ``properties``, ``required``,
``additionalProperties: false``, ``items``, ``enum``, ``minimum``/``maximum``,
``minLength``/``maxLength``, ``anyOf`` and local ``$ref`` into ``$defs`` (what
Pydantic's ``model_json_schema()`` writes for plain models). Validation is our own small walker so that any
property name (``__class__`` included) stays plain data.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import AfterValidator, WithJsonSchema

from plait.payloads import Codec

TYPES: Final = {"string", "integer", "number", "boolean", "object", "array", "null"}
KNOWN_KEYWORDS: Final = {
    "type", "properties", "required", "additionalProperties", "items", "enum", "minimum", "maximum",
    "minLength", "maxLength", "title", "description", "default", "examples", "format", "$schema",
    "anyOf", "$ref", "$defs", "const",
}  # fmt: skip
MAX_SCHEMA_DEPTH: Final = 16


def schema_problem(schema: Any, where: str = "", depth: int = 0) -> tuple[str, str] | None:
    """(path, reason) of the first unsupported part of ``schema``, or None when it is usable."""
    if not isinstance(schema, dict):
        return where, "a schema is a JSON object"
    if depth > MAX_SCHEMA_DEPTH:
        return where, f"the schema is nested deeper than {MAX_SCHEMA_DEPTH} levels"
    unknown = sorted(k for k in schema if k not in KNOWN_KEYWORDS)
    if unknown:
        return where, f"unsupported schema keyword {unknown[0]!r:.40}; use {', '.join(sorted(KNOWN_KEYWORDS))}"
    types = schema.get("type")
    listed = types if isinstance(types, list) else [types] if types is not None else []
    if not all(isinstance(t, str) and t in TYPES for t in listed):
        return f"{where}.type".lstrip("."), f"type must be one of {', '.join(sorted(TYPES))}"
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        return f"{where}.properties".lstrip("."), "properties is an object of schemas"
    for key, sub in properties.items():
        found = schema_problem(sub, f"{where}.properties.{key}".lstrip("."), depth + 1)
        if found:
            return found
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        return f"{where}.required".lstrip("."), "required is a list of property names"
    for keyword in ("anyOf",):
        options = schema.get(keyword, [])
        if not isinstance(options, list):
            return f"{where}.{keyword}".lstrip("."), f"{keyword} is a list of schemas"
        for index, sub in enumerate(options):
            found = schema_problem(sub, f"{where}.{keyword}[{index}]".lstrip("."), depth + 1)
            if found:
                return found
    defs = schema.get("$defs", {})
    if not isinstance(defs, dict):
        return f"{where}.$defs".lstrip("."), "$defs is an object of schemas"
    for key, sub in defs.items():
        found = schema_problem(sub, f"{where}.$defs.{key}".lstrip("."), depth + 1)
        if found:
            return found
    ref = schema.get("$ref")
    if ref is not None and not (isinstance(ref, str) and ref.startswith("#/$defs/")):
        return f"{where}.$ref".lstrip("."), "only local references (#/$defs/Name) are supported"
    if "items" in schema:
        return schema_problem(schema["items"], f"{where}.items".lstrip("."), depth + 1)
    return None


def json_type(value: Any) -> str:
    """The JSON type name of a Python value from JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def errors_for(
    schema: dict[str, Any], value: Any, where: str = "", depth: int = 0, root: dict[str, Any] | None = None
) -> list[str]:
    """What in ``value`` does not satisfy ``schema`` (empty when it does)."""
    label = where or "value"
    root = schema if root is None else root
    if depth > MAX_SCHEMA_DEPTH or not isinstance(schema, dict):
        return []
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = root.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})
        return errors_for(target, value, where, depth + 1, root)
    options = schema.get("anyOf")
    if isinstance(options, list) and options:
        results = [errors_for(o, value, where, depth + 1, root) for o in options]
        if all(results):
            return results[0]
    if "const" in schema and value != schema["const"]:
        return [f"{label}: must be {schema['const']!r:.100}"]
    types = schema.get("type")
    if types is not None:
        allowed = set(types if isinstance(types, list) else [types])
        actual = json_type(value)
        if actual not in allowed and not (actual == "integer" and "number" in allowed):
            return [f"{label}: expected {' or '.join(sorted(allowed))}, got {actual}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{label}: must be one of {schema['enum']!r:.200}"]
    problems: list[str] = []
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{label}: must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{label}: must be at most {schema['maximum']}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            problems.append(f"{label}: must have at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{label}: must have at most {schema['maxLength']} characters")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                problems.append(f"{where + '.' if where else ''}{key}: is required")
        if schema.get("additionalProperties") is False:
            problems.extend(f"{where + '.' if where else ''}{k}: is not allowed" for k in value if k not in properties)
        for key, sub in properties.items():
            if key in value:
                problems.extend(errors_for(sub, value[key], f"{where + '.' if where else ''}{key}", depth + 1, root))
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            problems.extend(errors_for(schema["items"], item, f"{label}[{index}]", depth + 1, root))
    return problems


def codec_for(schema: dict[str, Any] | None) -> Codec[Any]:
    """A codec that accepts JSON data satisfying ``schema`` (anything when it is empty or None)."""
    if not schema:
        return Codec(Any)
    rules = dict(schema)

    def check(value: Any) -> Any:
        problems = errors_for(rules, value)
        if problems:
            raise ValueError("; ".join(problems[:20]))
        return value

    return Codec(Annotated[Any, AfterValidator(check), WithJsonSchema(rules)])


def path_problem(schema: Any, path: tuple[str, ...]) -> str | None:
    """Why ``path`` cannot exist in data of ``schema`` (the missing field), or None when it may.

    Follows ``properties``, array ``items`` (by index), ``$ref`` into ``$defs``
    and ``anyOf`` (an optional field); a schema that says nothing allows anything.
    """
    return _path_problem(schema, path, schema if isinstance(schema, dict) else {}, 0)


def _path_problem(schema: Any, path: tuple[str, ...], root: dict[str, Any], depth: int) -> str | None:
    if not path or not isinstance(schema, dict) or depth > 64:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _path_problem(root.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {}), path, root, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list):
            usable = [o for o in options if isinstance(o, dict) and o.get("type") != "null"]
            results = [_path_problem(o, path, root, depth + 1) for o in usable]
            return None if not results or any(r is None for r in results) else results[0]
    head, rest = path[0], path[1:]
    kind = schema.get("type")
    if kind == "array" or "items" in schema:
        if not head.isdigit():
            return f"'{head}' (a list is indexed by number)"
        return _path_problem(schema.get("items", {}), rest, root, depth + 1)
    properties = schema.get("properties")
    if isinstance(properties, dict):
        if head in properties:
            return _path_problem(properties[head], rest, root, depth + 1)
        if schema.get("additionalProperties") not in (None, False):
            return _path_problem(schema["additionalProperties"], rest, root, depth + 1)
        return f"'{head}'"
    if kind in ("string", "integer", "number", "boolean", "null"):
        return f"'{head}' (the value is a {kind})"
    return None


def type_at(schema: Any, path: tuple[str, ...]) -> set[str] | None:
    """The JSON types the value at ``path`` may have (None when the schema does not say)."""
    root = schema if isinstance(schema, dict) else {}
    node: Any = schema
    for segment in (*path, None):
        for _ in range(8):  # unwrap $ref and optional wrappers
            if not isinstance(node, dict):
                return None
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                node = root.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})
                continue
            options = node.get("anyOf")
            if isinstance(options, list):
                types: set[str] = set()
                for option in options:
                    found = type_at(option if "$defs" in option else {**option, "$defs": root.get("$defs", {})}, ())
                    if found is None:
                        return None
                    types |= found
                if segment is None:
                    return types
                non_null = [o for o in options if isinstance(o, dict) and o.get("type") != "null"]
                node = non_null[0] if len(non_null) == 1 else None
                continue
            break
        if segment is None:
            break
        if not isinstance(node, dict):
            return None
        node = node.get("items") if node.get("type") == "array" else node.get("properties", {}).get(segment)
    if not isinstance(node, dict):
        return None
    kind = node.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {k for k in kind if isinstance(k, str)}
    return None
