"""The catalog an LLM reads (``registry.describe()``) and the ``apply_ops`` tool definition."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Literal

from plait.documents.builtins import BUILTINS
from plait.documents.conditions import OPERATORS
from plait.documents.model import BLOCK_ID, MAX_OPS

if TYPE_CHECKING:
    from plait.documents.registry import Registry

_ID: Final = {"type": "string", "pattern": BLOCK_ID.pattern}
_CONDITION: Final = {
    "type": ["object", "null"],
    "properties": {
        "ref": {"type": "string", "description": 'one template, e.g. "{{enrich.score}}"'},
        "op": {"enum": list(OPERATORS)},
        "value": {},
    },
    "required": ["ref", "op"],
}


def _op(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": {"op": {"const": name}, **properties},
        "required": ["op", *required],
        "additionalProperties": False,
    }


OP_SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "add_block": _op(
        "add_block",
        "Add a block that runs a connector (or a built-in wait) with params; templates in params read earlier blocks.",
        {
            "id": _ID,
            "type": {"type": "string"},
            "params": {"type": "object"},
            "after": {"type": "array", "items": _ID},
            "when": _CONDITION,
            "disabled": {"type": "boolean"},
        },
        ["id", "type"],
    ),
    "update_block": _op(
        "update_block",
        "Change a block: params are merged into its params (a key set to null is removed); when, after and "
        "disabled are replaced when given.",
        {
            "id": _ID,
            "params": {"type": "object"},
            "after": {"type": "array", "items": _ID},
            "when": _CONDITION,
            "disabled": {"type": "boolean"},
        },
        ["id"],
    ),
    "remove_block": _op("remove_block", "Remove a block that no other block references.", {"id": _ID}, ["id"]),
    "rename_block": _op(
        "rename_block",
        "Rename a block; every reference to it follows.",
        {"id": _ID, "new_id": _ID},
        ["id", "new_id"],
    ),
    "connect": _op("connect", "Make block 'to' run after block 'from'.", {"from": _ID, "to": _ID}, ["from", "to"]),
    "disconnect": _op(
        "disconnect",
        "Remove the 'after' edge from block 'from' to block 'to'.",
        {"from": _ID, "to": _ID},
        ["from", "to"],
    ),
    "set_input": _op("set_input", "Set the JSON Schema of the run input.", {"schema": {"type": "object"}}, ["schema"]),
    "set_var": _op(
        "set_var",
        "Set a document variable, read as {{vars.name}} (plain data, never a template).",
        {"name": {"type": "string"}, "value": {}},
        ["name", "value"],
    ),
    "set_output": _op("set_output", "Set the run's output: a value with templates.", {"value": {}}, ["value"]),
}

TEMPLATES_HELP: Final = (
    "Params may contain templates: {{input.field}} (the run input), {{vars.name}}, {{block_id.field}} "
    "(a field of an earlier block's output; a block runs after the blocks it references) and "
    "{{env.NAME}} (allowed names only). A value that is exactly one template keeps its type; templates "
    "inside longer text render as text. A block whose 'when' condition fails, or that is disabled, is "
    "skipped and reads as null."
)


def describe_registry(registry: Registry) -> dict[str, Any]:
    connectors = [
        {
            "type": c.type,
            "description": c.description,
            "params": c.params_schema(),
            "output": c.output_schema(),
        }
        for c in registry.connectors
    ]
    builtins = [{"type": b.type, "description": b.description, "params": b.params_schema()} for b in BUILTINS.values()]
    return {
        "connectors": connectors,
        "builtin_blocks": builtins,
        "templates": TEMPLATES_HELP,
        "condition_operators": list(OPERATORS),
        "env": sorted(registry.env_names),
        "ops": OP_SCHEMAS,
        "max_ops_per_call": MAX_OPS,
        "block_id_pattern": BLOCK_ID.pattern,
    }


def tools_for(registry: Registry, format: Literal["openai", "anthropic"]) -> list[dict[str, Any]]:
    types = ", ".join(registry.type_names())
    description = (
        "Edit the workflow document with a list of operations. Each op applies on its own or is skipped "
        "with a code, a reason and a hint; later ops see the earlier applied ones. "
        f"Block types: {types}. {TEMPLATES_HELP}"
    )
    parameters = {
        "type": "object",
        "properties": {
            "ops": {
                "type": "array",
                "maxItems": MAX_OPS,
                "items": {"anyOf": list(OP_SCHEMAS.values())},
            }
        },
        "required": ["ops"],
    }
    if format == "openai":
        return [
            {
                "type": "function",
                "function": {"name": "apply_ops", "description": description, "parameters": parameters},
            }
        ]
    if format == "anthropic":
        return [{"name": "apply_ops", "description": description, "input_schema": parameters}]
    raise ValueError(f"unknown tool format {format!r}: use 'openai' or 'anthropic'")
