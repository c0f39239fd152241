"""Checks a document (or one block of it) and reports every problem with its path.

Used by ``registry.compile`` on the whole document and by ``apply_ops`` on the
block an op touches, so both speak the same codes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

from pydantic import ValidationError

from plait.documents.builtins import BuiltinType
from plait.documents.conditions import pattern_problem
from plait.documents.connectors import Connector
from plait.documents.model import (
    BLOCK_ID,
    DOCUMENT_ID,
    MAX_BLOCKS,
    MAX_DOCUMENT_BYTES,
    RESERVED_IDS,
    short,
    too_large_problem,
)
from plait.documents.problems import Problem
from plait.documents.schemas import json_type, path_problem, schema_problem, type_at
from plait.documents.templates import (
    MAX_DEPTH,
    NAMESPACES,
    Found,
    Reference,
    find_templates,
    lookup_path,
    whole_template,
)

BlockType = Connector[Any, Any] | BuiltinType


class TypeSource(Protocol):
    """What validation needs from a registry."""

    @property
    def env_names(self) -> frozenset[str]: ...

    def block_type(self, name: str) -> BlockType | None: ...

    def type_names(self) -> list[str]: ...


def normalized_key(key: str) -> str:
    """How param keys are compared to hidden names: case, '_', '-' and spaces do not matter."""
    return re.sub(r"[\s_\-]", "", key).casefold()


class DocumentView:
    """A document as plain data, with the block graph it implies (dependencies by block id)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.id: str = data.get("id", "")
        self.description: str = data.get("description", "")
        self.input: dict[str, Any] = dict(data.get("input") or {})
        self.vars: dict[str, Any] = dict(data.get("vars") or {})
        self.output: Any = data.get("output")
        self.blocks: dict[str, dict[str, Any]] = {}
        self.duplicates: list[int] = []
        self._deps: dict[str, frozenset[str]] = {}
        for index, block in enumerate(data.get("blocks") or []):
            if block["id"] in self.blocks:
                self.duplicates.append(index)
            else:
                self.blocks[block["id"]] = _block_data(block)

    def to_data(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "input": self.input,
            "vars": self.vars,
            "blocks": list(self.blocks.values()),
            "output": self.output,
        }

    def index_of(self, block_id: str) -> int:
        return list(self.blocks).index(block_id)

    def where(self, block_id: str) -> str:
        return f"blocks[{self.index_of(block_id)}]"

    def deps(self, block_id: str) -> frozenset[str]:
        """The blocks ``block_id`` waits for: its ``after`` list and the blocks its templates read."""
        found = self._deps.get(block_id)
        if found is None:
            block = self.blocks[block_id]
            found = frozenset(block.get("after", [])) | frozenset(template_blocks(block))
            self._deps[block_id] = found
        return found

    def changed(self, block_id: str) -> None:
        self._deps.pop(block_id, None)

    def depends_on(self, block_id: str, other: str) -> bool:
        """Whether ``block_id`` waits, directly or not, for ``other``."""
        seen: set[str] = set()
        stack = [block_id]
        while stack:
            current = stack.pop()
            for dep in self.deps(current) if current in self.blocks else ():
                if dep == other:
                    return True
                if dep not in seen:
                    seen.add(dep)
                    stack.append(dep)
        return False

    def dependents(self, block_id: str) -> list[str]:
        """Blocks that reference ``block_id`` (by template or ``after``)."""
        return [b for b in self.blocks if b != block_id and block_id in self.deps(b)]

    def output_references(self, block_id: str) -> bool:
        return any(f.reference is not None and f.reference.root == block_id for f in find_templates(self.output, ""))


def _block_data(block: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": block["id"],
        "type": block.get("type", ""),
        "params": block.get("params") or {},
        "after": list(block.get("after") or []),
        "when": block.get("when"),
        "disabled": bool(block.get("disabled", False)),
    }


def template_blocks(block: Mapping[str, Any]) -> set[str]:
    """Block ids the block's params and condition reference."""
    found = {f.reference.root for f in find_templates(block.get("params"), "") if f.reference is not None}
    when = block.get("when")
    if isinstance(when, dict):
        found |= {f.reference.root for f in find_templates(when.get("ref"), "") if f.reference is not None}
    return found - set(NAMESPACES)


def hidden_keys_in(params: Any, block_type: BlockType, where: str) -> Iterator[str]:
    """Paths of keys in ``params`` (at any depth, any letter case) that name a hidden param or its secret."""
    names = {normalized_key(key) for key, _ in block_type.hidden} | {
        normalized_key(secret) for _, secret in block_type.hidden
    }
    if not names:
        return
    stack: list[tuple[Any, str, int]] = [(params, where, 0)]
    while stack:
        value, at, depth = stack.pop()
        if depth > MAX_DEPTH:
            continue
        if isinstance(value, dict):
            for key, sub in value.items():
                if isinstance(key, str) and normalized_key(key) in names:
                    yield f"{at}.{key}"
                else:
                    stack.append((sub, f"{at}.{key}", depth + 1))
        elif isinstance(value, list):
            stack.extend((sub, f"{at}[{i}]", depth + 1) for i, sub in enumerate(value))


def user_only_keys_in(params: Mapping[str, Any], block_type: BlockType) -> list[str]:
    names = {normalized_key(k) for k in block_type.user_only_keys}
    return [k for k in params if isinstance(k, str) and normalized_key(k) in names]


def _depth(value: Any, limit: int) -> int:
    stack: list[tuple[Any, int]] = [(value, 0)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def hidden_problems(params: Any, block_type: BlockType, where: str) -> list[Problem]:
    return [
        Problem(
            path,
            "hidden_param",
            f"'{path.rsplit('.', 1)[-1]:.40}' is a hidden param of '{block_type.type}': it is filled from the "
            "engine's secrets and cannot be set in a document",
            "remove it; the secret is provided when the block runs",
        )
        for path in hidden_keys_in(params, block_type, where)
    ]


class Checker:
    """Validation against one registry; ``check_block`` and ``check_document`` return problems."""

    def __init__(self, types: TypeSource) -> None:
        self.types = types
        # Blocks known to be on no cycle: their references and edges need no upstream search.
        self._acyclic: set[str] = set()

    def forget_cycles(self) -> None:
        """The graph changed: find out again which blocks are on a cycle."""
        self._acyclic = set()

    # -- one block -----------------------------------------------------------

    def check_block(self, view: DocumentView, block_id: str, where: str | None = None) -> list[Problem]:
        block = view.blocks[block_id]
        where = where or view.where(block_id)
        if block_id not in self._acyclic and not view.depends_on(block_id, block_id):
            self._acyclic.add(block_id)
        problems: list[Problem] = []
        if not isinstance(block_id, str) or not BLOCK_ID.match(block_id) or block_id in RESERVED_IDS:
            problems.append(invalid_id_problem(block_id, f"{where}.id"))
        block_type = self.types.block_type(block["type"])
        if block_type is None:
            known = ", ".join(self.types.type_names()[:30])
            problems.append(
                Problem(
                    f"{where}.type",
                    "unknown_type",
                    f"there is no block type {short(block['type'])}",
                    f"use one of: {known}",
                )
            )
        params = block["params"]
        if not isinstance(params, dict):
            problems.append(Problem(f"{where}.params", "invalid_params", "params is a JSON object"))
            return problems
        if _depth(params, MAX_DEPTH) > MAX_DEPTH:
            problems.append(Problem(f"{where}.params", "too_large", f"params nest deeper than {MAX_DEPTH} levels"))
            return problems
        if block_type is not None:
            hidden = hidden_problems(params, block_type, f"{where}.params")
            problems.extend(hidden)
            if not hidden:
                problems.extend(self._check_params(view, block_id, block_type, params, f"{where}.params"))
        problems.extend(self._check_templates(view, block_id, find_templates(params, f"{where}.params")))
        problems.extend(self._check_after(view, block_id, where))
        problems.extend(self._check_when(view, block_id, block.get("when"), f"{where}.when"))
        if block.get("when") is not None and block["type"] in ("wait.event", "wait.approval"):
            problems.append(
                Problem(
                    f"{where}.when",
                    "invalid_params",
                    f"'{block['type']}' blocks cannot have a condition",
                    "put the condition on the blocks that use the wait's output",
                )
            )
        return problems

    def _check_params(
        self, view: DocumentView, block_id: str, block_type: BlockType, params: dict[str, Any], where: str
    ) -> list[Problem]:
        problems: list[Problem] = []
        fields = block_type.fields
        for key in params:
            if key not in fields:
                problems.append(
                    Problem(
                        f"{where}.{key:.40}",
                        "invalid_params",
                        f"'{block_type.type}' has no param {short(key)}",
                        f"its params are: {', '.join(fields) or 'none'}",
                    )
                )
        for key, spec in fields.items():
            if key not in params:
                if spec.required:
                    problems.append(
                        Problem(f"{where}.{key}", "invalid_params", f"'{key}' is required by '{block_type.type}'")
                    )
                continue
            value = params[key]
            whole = whole_template(value) if isinstance(value, str) else None
            if whole is not None:
                problem = self._type_fit(view, whole, spec.json_types, f"{where}.{key}", key)
                if problem is not None:
                    problems.append(problem)
                continue
            if _has_template(value):
                kind = json_type(value)
                if not isinstance(value, str) and spec.json_types is not None and kind not in spec.json_types:
                    problems.append(
                        Problem(
                            f"{where}.{key}",
                            "invalid_params",
                            f"'{key}' takes {' or '.join(sorted(spec.json_types))}, not the {kind} given",
                        )
                    )
                elif isinstance(value, str) and spec.json_types is not None and "string" not in spec.json_types:
                    problems.append(
                        Problem(
                            f"{where}.{key}",
                            "invalid_params",
                            f"'{key}' takes {' or '.join(sorted(spec.json_types))}, but text with templates "
                            "renders as a string",
                            'use a single template such as "{{block.field}}" to pass a typed value',
                        )
                    )
                continue
            try:
                spec.adapter.validate_python(value)
            except ValidationError as exc:
                for err in exc.errors(include_url=False, include_input=False, include_context=False):
                    at = ".".join(str(p) for p in err["loc"])
                    problems.append(Problem(f"{where}.{key}{'.' + at if at else ''}", "invalid_params", err["msg"]))
        if isinstance(block_type, BuiltinType) and not problems:
            extra = block_type.extra_problem(params)
            if extra is not None:
                problems.append(Problem(f"{where.rsplit('.params', 1)[0]}.{extra[0]}", "invalid_params", extra[1]))
        return problems

    def _referenced_types(self, view: DocumentView, ref: Reference) -> set[str] | None:
        if ref.root == "input":
            return type_at(view.input, ref.path)
        if ref.root == "env":
            return {"string"}
        if ref.root == "vars":
            if not ref.path:
                return {"object"}
            value = lookup_path(view.vars, ref.path)
            return {json_type(value)}
        target = view.blocks.get(ref.root)
        block_type = self.types.block_type(target["type"]) if target else None
        if target is None or block_type is None:
            return None
        return type_at(block_type.output_schema(target["params"]), ref.path)

    def _type_fit(
        self, view: DocumentView, ref: Reference, accepts: frozenset[str] | None, where: str, key: str
    ) -> Problem | None:
        gives = self._referenced_types(view, ref)
        if gives is None or accepts is None:
            return None
        widened = set(gives) | ({"number"} if "integer" in gives else set())
        # A skipped or disabled block reads null: that alone never makes a reference unfit.
        non_null = gives - {"null"}
        if widened & accepts or not non_null or non_null <= accepts:
            return None
        return Problem(
            where,
            "invalid_params",
            f"{ref.text} gives {' or '.join(sorted(gives))} but '{key}' takes {' or '.join(sorted(accepts))}",
            "reference a field of the right type, or embed it in text",
        )

    def _check_templates(self, view: DocumentView, block_id: str | None, found: Iterable[Found]) -> list[Problem]:
        problems: list[Problem] = []
        for item in found:
            problem = self.reference_problem(view, block_id, item)
            if problem is not None:
                problems.append(problem)
        return problems

    def reference_problem(self, view: DocumentView, block_id: str | None, item: Found) -> Problem | None:
        """What is wrong with one template (None when it is fine); ``block_id`` is the block using it."""
        ref = item.reference
        shown = "{{" + item.inner[:60] + "}}"
        if ref is None:
            return Problem(
                item.where,
                "unknown_reference",
                f"{shown} is not a reference",
                "write {{input.field}}, {{vars.name}}, {{env.NAME}} or {{block_id.field}}",
            )
        if ref.root == "input":
            missing = path_problem(view.input, ref.path)
            if missing:
                props = ", ".join(list(view.input.get("properties", {}))[:20]) or "none"
                return Problem(
                    item.where, "unknown_field", f"the input has no field {missing}", f"input fields: {props}"
                )
            return None
        if ref.root == "vars":
            if not ref.path:
                return None
            if ref.path[0] not in view.vars:
                return Problem(
                    item.where,
                    "unknown_field",
                    f"there is no var '{ref.path[0]}'",
                    f"add it with set_var; vars: {', '.join(list(view.vars)[:20]) or 'none'}",
                )
            return None
        if ref.root == "env":
            if len(ref.path) != 1 or ref.path[0] not in self.types.env_names:
                return Problem(
                    item.where,
                    "unknown_reference",
                    f"{shown} is not an allowed environment value",
                    f"allowed: {', '.join(sorted(self.types.env_names)) or 'none'} "
                    "(a person adds names with Engine(document_env=...))",
                )
            return None
        target = view.blocks.get(ref.root)
        if target is None:
            return Problem(
                item.where,
                "unknown_reference",
                f"there is no block '{ref.root}'",
                f"blocks: {', '.join(list(view.blocks)[:30]) or 'none'}",
            )
        on_cycle = block_id is not None and block_id not in self._acyclic
        if block_id is not None and on_cycle and (ref.root == block_id or view.depends_on(ref.root, block_id)):
            return Problem(
                item.where,
                "reference_not_upstream",
                f"block '{ref.root}' runs after '{block_id}' (it depends on it), so '{block_id}' cannot read it",
                "reference only blocks that come before this one",
            )
        block_type = self.types.block_type(target["type"])
        if block_type is not None and ref.path:
            missing = path_problem(block_type.output_schema(target["params"]), ref.path)
            if missing:
                schema = block_type.output_schema(target["params"])
                fields = ", ".join(list(schema.get("properties", {}))[:30]) or "none"
                return Problem(
                    item.where,
                    "unknown_field",
                    f"the output of '{ref.root}' ({target['type']}) has no field {missing}",
                    f"its fields: {fields}",
                )
        return None

    def _check_after(self, view: DocumentView, block_id: str, where: str) -> list[Problem]:
        problems: list[Problem] = []
        after = view.blocks[block_id]["after"]
        for index, other in enumerate(after):
            at = f"{where}.after[{index}]"
            if not isinstance(other, str) or other not in view.blocks:
                problems.append(Problem(at, "unknown_reference", f"there is no block {short(other)} to run after"))
            elif block_id not in self._acyclic and (other == block_id or view.depends_on(other, block_id)):
                problems.append(
                    Problem(
                        at,
                        "cycle",
                        f"'{block_id}' cannot run after '{other}': '{other}' already waits for '{block_id}'",
                        "remove one of the edges",
                    )
                )
        return problems

    def _check_when(self, view: DocumentView, block_id: str, when: Any, where: str) -> list[Problem]:
        if when is None:
            return []
        if not isinstance(when, dict):
            return [Problem(where, "invalid_params", 'when is {"ref": "{{block.field}}", "op": "gt", "value": 5}')]
        ref = when.get("ref")
        if not isinstance(ref, str) or whole_template(ref) is None:
            return [Problem(f"{where}.ref", "invalid_params", 'when.ref is one template, e.g. "{{enrich.score}}"')]
        problems = self._check_templates(view, block_id, find_templates(ref, f"{where}.ref"))
        reason = pattern_problem(str(when.get("op")), when.get("value"))
        if reason:
            problems.append(Problem(f"{where}.value", "invalid_params", reason))
        return problems

    # -- the whole document --------------------------------------------------

    def check_document(self, view: DocumentView, raw_blocks: list[dict[str, Any]] | None = None) -> list[Problem]:
        """Every problem of the document, in document order."""
        problems: list[Problem] = []
        size = len(json.dumps(view.to_data(), default=str))
        if size > MAX_DOCUMENT_BYTES:
            return [too_large_problem(size)]
        if len(view.blocks) + len(view.duplicates) > MAX_BLOCKS:
            problems.append(Problem("blocks", "too_large", f"a document has at most {MAX_BLOCKS} blocks"))
        if not isinstance(view.id, str) or not DOCUMENT_ID.match(view.id):
            problems.append(invalid_id_problem(view.id, "id", document=True))
        found = schema_problem(view.input)
        if found:
            problems.append(Problem(f"input.{found[0]}".rstrip("."), "invalid_params", found[1]))
        if not view.blocks:
            problems.append(Problem("blocks", "invalid_params", "the document has no blocks", "add one with add_block"))
        for index in view.duplicates:
            block_id = raw_blocks[index]["id"] if raw_blocks else "?"
            problems.append(
                Problem(
                    f"blocks[{index}].id",
                    "duplicate_id",
                    f"block id {short(block_id)} is used twice",
                    "give every block its own id",
                )
            )
        self._acyclic = acyclic_blocks(view)
        for index, block_id in enumerate(view.blocks):
            problems.extend(self.check_block(view, block_id, f"blocks[{index}]"))
        problems.extend(self._check_templates(view, None, find_templates(view.output, "output")))
        return problems


def acyclic_blocks(view: DocumentView) -> set[str]:
    """Blocks on no dependency cycle (Kahn's algorithm: what is left over sits on, or after, a cycle)."""
    waiting = {b: {d for d in view.deps(b) if d in view.blocks} for b in view.blocks}
    users: dict[str, list[str]] = {}
    for block_id, deps in waiting.items():
        for dep in deps:
            users.setdefault(dep, []).append(block_id)
    ready = [b for b, deps in waiting.items() if not deps]
    done: set[str] = set()
    while ready:
        current = ready.pop()
        done.add(current)
        for user in users.get(current, ()):
            waiting[user].discard(current)
            if not waiting[user]:
                ready.append(user)
    return done


def invalid_id_problem(value: Any, where: str, *, document: bool = False) -> Problem:
    rule = "letters, digits, '_', '-' and '.'" if document else "letters, digits, '_' and '-'"
    limit = 128 if document else 64
    return Problem(
        where,
        "invalid_id",
        f"{short(value)} is not a valid id",
        f"start with a letter, use only {rule}, at most {limit} characters"
        + ("" if document else "; input, vars, env and output are reserved"),
    )


def _has_template(value: Any) -> bool:
    return any(True for _ in find_templates(value, ""))
