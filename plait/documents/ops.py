"""Patch operations: the only way an LLM changes a document, each validated on its own.

Every op applies or is skipped with a code, a reason and a hint; a skipped op
changes nothing, later ops see the earlier applied ones, and the input document
is never modified. A hidden param's value is never echoed back: skipped ops are
returned with such values replaced by ``[hidden]``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from plait.documents.catalog import OP_SCHEMAS
from plait.documents.model import (
    BLOCK_ID,
    MAX_BLOCKS,
    MAX_DOCUMENT_BYTES,
    MAX_OPS,
    RESERVED_IDS,
    Condition,
    WorkflowDocument,
    short,
)
from plait.documents.problems import Problem
from plait.documents.schemas import schema_problem
from plait.documents.secrets import REDACTED
from plait.documents.templates import find_templates, rename_root
from plait.documents.validation import (
    Checker,
    DocumentView,
    TypeSource,
    hidden_keys_in,
    hidden_problems,
    invalid_id_problem,
    user_only_keys_in,
)

Actor = Literal["llm", "user"]
_VAR_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class SkippedOp(BaseModel):
    """An op that was not applied: where it was, what it said (hidden values removed), and why."""

    index: int
    op: Any
    code: str
    reason: str
    hint: str = ""


class PatchResult(BaseModel):
    """What ``apply_ops`` did: the new document, the applied op indexes, the skipped ops and a summary.

    ``summary`` is written to be sent back to the LLM as is. ``problems`` lists
    what still keeps the new document from compiling (empty when it compiles).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    document: WorkflowDocument
    applied: list[int] = Field(default_factory=list)
    skipped: list[SkippedOp] = Field(default_factory=list)
    summary: str = ""
    problems: list[dict[str, Any]] = Field(default_factory=list)
    version: int | str | None = None
    """The stored version number after ``engine.patch_document``; the content hash from ``apply_ops``."""

    @property
    def changed(self) -> bool:
        return bool(self.applied)


class _Skip(Exception):
    def __init__(self, code: str, reason: str, hint: str = "") -> None:
        super().__init__(reason)
        self.code, self.reason, self.hint = code, reason, hint

    @classmethod
    def of(cls, problems: Sequence[Problem]) -> _Skip:
        first = problems[0]
        reason = "; ".join(f"{p.path}: {p.reason}" if p.path else p.reason for p in problems[:5])
        return cls(first.code, reason, first.hint)


class _Patcher:
    """Applies ops to a working copy of the document, undoing any op that would add a problem."""

    def __init__(self, doc: WorkflowDocument, types: TypeSource, actor: Actor) -> None:
        # model_dump builds fresh data, and ops replace dicts rather than change them: no deep copy needed.
        self.view = DocumentView(doc.to_data())
        self.types = types
        self.checker = Checker(types)
        self.actor = actor
        self.sizes = {b: _size(block) for b, block in self.view.blocks.items()}
        self.base_size = _size({**self.view.to_data(), "blocks": []})

    # -- bookkeeping ---------------------------------------------------------

    def _snapshot(self) -> tuple[Any, ...]:
        view = self.view
        return (
            dict(view.blocks),
            view.input,
            view.vars,
            view.output,
            dict(view._deps),
            dict(self.sizes),
            self.base_size,
        )

    def _restore(self, saved: tuple[Any, ...]) -> None:
        view = self.view
        view.blocks, view.input, view.vars, view.output, view._deps, self.sizes, self.base_size = saved

    def _put(self, block: dict[str, Any]) -> None:
        self.view.blocks[block["id"]] = block
        self.view.changed(block["id"])
        self.checker.forget_cycles()
        self.sizes[block["id"]] = _size(block)

    def _check_size(self) -> None:
        total = self.base_size + sum(self.sizes.values())
        if total > MAX_DOCUMENT_BYTES:
            raise _Skip(
                "too_large",
                f"the document would be {total} bytes of JSON, over the {MAX_DOCUMENT_BYTES}-byte limit",
                "keep params small; pass large data by reference",
            )
        if len(self.view.blocks) > MAX_BLOCKS:
            raise _Skip("too_large", f"a document has at most {MAX_BLOCKS} blocks")

    def _new_problems(self, before: Sequence[Problem], touched: Sequence[str]) -> list[Problem]:
        after = [p for b in touched if b in self.view.blocks for p in self.checker.check_block(self.view, b)]
        seen = {(p.code, p.reason) for p in before}
        return [p for p in after if (p.code, p.reason) not in seen]

    def _problems_of(self, touched: Sequence[str]) -> list[Problem]:
        return [p for b in touched if b in self.view.blocks for p in self.checker.check_block(self.view, b)]

    # -- one op --------------------------------------------------------------

    def apply(self, op: Any) -> None:
        name = _check_shape(op)
        self.checker.forget_cycles()
        saved = self._snapshot()
        try:
            getattr(self, f"_op_{name}")(op)
            self._check_size()
        except BaseException:
            self._restore(saved)
            raise

    def _block_id(self, op: Mapping[str, Any], key: str = "id") -> str:
        block_id = op[key]
        if block_id not in self.view.blocks:
            raise _Skip(
                "block_not_found",
                f"there is no block {short(block_id)}",
                f"blocks: {', '.join(list(self.view.blocks)[:30]) or 'none'}",
            )
        return str(block_id)

    def _guard_params(self, params: Any, type_name: str, where: str) -> None:
        block_type = self.types.block_type(type_name)
        if block_type is None or not isinstance(params, dict):
            return
        hidden = hidden_problems(params, block_type, where)
        if hidden:
            raise _Skip.of(hidden)
        if self.actor == "llm":
            for key in user_only_keys_in(params, block_type):
                raise _Skip(
                    "user_only_param",
                    f"'{key}' of '{type_name}' may only be set by a person",
                    "leave it out; ask the user to set it",
                )

    def _op_add_block(self, op: Mapping[str, Any]) -> None:
        block_id = op["id"]
        if not BLOCK_ID.match(block_id) or block_id in RESERVED_IDS:
            problem = invalid_id_problem(block_id, "id")
            raise _Skip(problem.code, problem.reason, problem.hint)
        if block_id in self.view.blocks:
            raise _Skip("duplicate_id", f"a block '{block_id}' already exists", "choose another id, or update_block")
        if self.types.block_type(op["type"]) is None:
            raise _Skip(
                "unknown_type",
                f"there is no block type {short(op['type'])}",
                f"use one of: {', '.join(self.types.type_names()[:30])}",
            )
        params = op.get("params") or {}
        self._guard_params(params, op["type"], "params")
        block = {
            "id": block_id,
            "type": op["type"],
            "params": params,
            "after": list(op.get("after") or []),
            "when": op.get("when"),
            "disabled": bool(op.get("disabled", False)),
        }
        self._put(block)
        problems = self._problems_of([block_id])
        if problems:
            raise _Skip.of(problems)

    def _op_update_block(self, op: Mapping[str, Any]) -> None:
        block_id = self._block_id(op)
        current = self.view.blocks[block_id]
        touched = [block_id, *self.view.dependents(block_id)]
        before = self._problems_of(touched)
        block = dict(current)
        if "params" in op:
            self._guard_params(op["params"], current["type"], "params")
            merged = dict(current["params"])
            for key, value in op["params"].items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            block["params"] = merged
        for key in ("after", "when", "disabled"):
            if key in op:
                block[key] = op[key] if key != "after" else list(op[key] or [])
        self._put(block)
        problems = self._new_problems(before, touched)
        if problems:
            raise _Skip.of(problems)

    def _op_remove_block(self, op: Mapping[str, Any]) -> None:
        block_id = self._block_id(op)
        users = self.view.dependents(block_id)
        if self.view.output_references(block_id):
            users.append("output")
        if users:
            raise _Skip(
                "block_referenced",
                f"'{block_id}' is referenced by {', '.join(users[:20])}",
                "remove or change those references first (or rename_block to keep them)",
            )
        del self.view.blocks[block_id]
        self.view.changed(block_id)
        self.sizes.pop(block_id, None)

    def _op_rename_block(self, op: Mapping[str, Any]) -> None:
        old = self._block_id(op)
        new = op["new_id"]
        if not BLOCK_ID.match(new) or new in RESERVED_IDS:
            problem = invalid_id_problem(new, "new_id")
            raise _Skip(problem.code, problem.reason, problem.hint)
        if new in self.view.blocks:
            raise _Skip("duplicate_id", f"a block '{new}' already exists", "choose another id")
        renamed: dict[str, dict[str, Any]] = {}
        for block_id, block in self.view.blocks.items():
            uses = old in self.view.deps(block_id)
            if uses:
                when = block.get("when")
                block = {
                    **block,
                    "params": rename_root(block["params"], old, new),
                    "after": [new if a == old else a for a in block["after"]],
                    "when": {**when, "ref": rename_root(when.get("ref"), old, new)} if isinstance(when, dict) else when,
                }
            if block_id == old:
                block = {**block, "id": new}
            renamed[new if block_id == old else block_id] = block
        self.view.blocks = renamed
        self.view._deps = {}
        self.view.output = rename_root(self.view.output, old, new)
        self.sizes = {b: _size(block) for b, block in renamed.items()}
        self.base_size = _size({**self.view.to_data(), "blocks": []})

    def _op_connect(self, op: Mapping[str, Any]) -> None:
        source, target = self._block_id(op, "from"), self._block_id(op, "to")
        if source == target or self.view.depends_on(source, target):
            raise _Skip(
                "cycle",
                f"'{target}' cannot run after '{source}': '{source}' already waits for '{target}'",
                "remove one of the edges",
            )
        block = self.view.blocks[target]
        if source not in block["after"]:
            self._put({**block, "after": [*block["after"], source]})

    def _op_disconnect(self, op: Mapping[str, Any]) -> None:
        source, target = self._block_id(op, "from"), self._block_id(op, "to")
        block = self.view.blocks[target]
        self._put({**block, "after": [a for a in block["after"] if a != source]})

    def _input_problems(self) -> list[Problem]:
        found = [p for b in self.view.blocks for p in self.checker.check_block(self.view, b)]
        found += self._output_problems()
        return [p for p in found if p.code == "unknown_field" and "input" in p.reason]

    def _output_problems(self) -> list[Problem]:
        return [
            p
            for item in find_templates(self.view.output, "output")
            if (p := self.checker.reference_problem(self.view, None, item)) is not None
        ]

    def _op_set_input(self, op: Mapping[str, Any]) -> None:
        schema = op["schema"]
        found = schema_problem(schema)
        if found:
            raise _Skip("invalid_params", f"schema{'.' + found[0] if found[0] else ''}: {found[1]}")
        before = self._input_problems()
        self.view.input = dict(schema)
        self.base_size = _size({**self.view.to_data(), "blocks": []})
        new = [p for p in self._input_problems() if p not in before]
        if new:
            raise _Skip.of(new)

    def _op_set_var(self, op: Mapping[str, Any]) -> None:
        name = op["name"]
        if not _VAR_NAME.match(name):
            raise _Skip("invalid_id", f"{short(name)} is not a valid var name", "use letters, digits, '_' and '-'")
        self.view.vars = {**self.view.vars, name: op["value"]}
        self.base_size = _size({**self.view.to_data(), "blocks": []})

    def _op_set_output(self, op: Mapping[str, Any]) -> None:
        self.view.output = op["value"]
        self.base_size = _size({**self.view.to_data(), "blocks": []})
        problems = self._output_problems()
        if problems:
            raise _Skip.of(problems)


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(", ", ": "), default=str))


_ARG_TYPES: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "new_id": str,
    "type": str,
    "from": str,
    "to": str,
    "name": str,
    "params": dict,
    "after": list,
    "disabled": bool,
    "schema": dict,
}


def _check_shape(op: Any) -> str:
    """The op's name once its shape is right; raises _Skip(malformed_op) otherwise."""
    if not isinstance(op, dict):
        raise _Skip("malformed_op", f"an op is a JSON object, got {type(op).__name__}", 'e.g. {"op": "add_block", ...}')
    name = op.get("op")
    if not isinstance(name, str) or name not in OP_SCHEMAS:
        raise _Skip(
            "malformed_op",
            f"unknown or missing 'op' {short(name)}" if "op" in op else "the op has no 'op' field",
            f"use one of: {', '.join(OP_SCHEMAS)}",
        )
    spec = OP_SCHEMAS[name]
    allowed, required = set(spec["properties"]), spec["required"]
    extra = sorted(str(k) for k in op if k not in allowed)
    if extra:
        raise _Skip(
            "malformed_op", f"{name} has no field {short(extra[0])}", f"its fields: {', '.join(sorted(allowed))}"
        )
    missing = [k for k in required if k not in op]
    if missing:
        raise _Skip("malformed_op", f"{name} needs '{missing[0]}'", f"required: {', '.join(required)}")
    for key, kind in _ARG_TYPES.items():
        if key in op and not isinstance(op[key], kind) and not (key == "after" and op[key] is None):
            raise _Skip("malformed_op", f"'{key}' must be a {getattr(kind, '__name__', kind)}")
    if isinstance(op.get("after"), list) and not all(isinstance(a, str) for a in op["after"]):
        raise _Skip("malformed_op", "'after' is a list of block ids")
    if op.get("when") is not None:
        try:
            Condition.model_validate(op["when"])
        except ValidationError as exc:
            detail = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in detail["loc"])
            raise _Skip(
                "malformed_op",
                f"when{'.' + where if where else ''}: {detail['msg']}",
                'when is {"ref": "{{block.field}}", "op": "gt", "value": 5}',
            ) from None
    return name


def redacted_op(op: Any, types: TypeSource, current: Mapping[str, Any] | None = None) -> Any:
    """``op`` as it may be echoed: the value under any hidden-param key replaced by ``[hidden]``."""
    if not isinstance(op, dict):
        return op if isinstance(op, str | int | float | bool) or op is None else short(op, 200)
    type_name = (
        op.get("type") if op.get("op") == "add_block" else (current or {}).get(str(op.get("id")), {}).get("type")
    )
    block_type = types.block_type(type_name) if isinstance(type_name, str) else None
    if block_type is None or not block_type.hidden or not isinstance(op.get("params"), dict):
        return op
    params = copy.deepcopy(op["params"])
    for path in hidden_keys_in(params, block_type, ""):
        _replace_at(params, path, REDACTED)
    return {**op, "params": params}


def _replace_at(data: Any, path: str, value: Any) -> None:
    parts = re.findall(r"\.([^.\[]+)|\[(\d+)\]", path)
    target = data
    for index, (key, position) in enumerate(parts):
        last = index == len(parts) - 1
        selector: Any = key if key else int(position)
        if last:
            target[selector] = value
        else:
            target = target[selector]


def _label(op: Any) -> str:
    if not isinstance(op, dict):
        return "op"
    name = str(op.get("op", "op"))[:30]
    target = op.get("id") or op.get("name") or (f"{op.get('from')} -> {op.get('to')}" if "from" in op else "")
    return f"{name} {short(target)}" if target else name


def summarize(
    ops: Sequence[Any], applied: Sequence[int], skipped: Sequence[SkippedOp], problems: Sequence[Problem]
) -> str:
    """The text sent back to the LLM: what applied, what was skipped and why, how to fix it."""
    total = len(ops)
    lines = [f"{len(applied)} of {total} operation{'s' if total != 1 else ''} applied, {len(skipped)} skipped."]
    if applied:
        lines.append("Applied: " + "; ".join(f"#{i} {_label(ops[i])}" for i in applied[:50]))
    if skipped:
        lines.append("Skipped (nothing of these changed the document):")
        for item in skipped[:50]:
            hint = f" Fix: {item.hint}" if item.hint else ""
            lines.append(f"- #{item.index} {_label(item.op)} [{item.code}]: {item.reason}.{hint}")
    if problems:
        lines.append(f"The document does not compile yet ({len(problems)} problem{'s' if len(problems) != 1 else ''}):")
        lines.extend(f"- {p.line()}" for p in problems[:20])
    else:
        lines.append("The document is valid and compiles.")
    return "\n".join(lines)


def apply_ops(
    document: WorkflowDocument | Mapping[str, Any] | str,
    ops: Sequence[Any] | Any,
    registry: TypeSource,
    *,
    actor: Actor = "llm",
    expected_version: str | None = None,
) -> PatchResult:
    """Apply ``ops`` to a copy of ``document``; see ``PatchResult``.

    ``expected_version`` is the document's content hash the caller last saw:
    when it differs, every op is skipped with ``version_conflict``.
    """
    if actor not in ("llm", "user"):
        raise ValueError(f"actor must be 'llm' or 'user', not {actor!r}")
    doc = WorkflowDocument.parse(document)
    op_list: list[Any] = list(ops) if isinstance(ops, list | tuple) else [ops]
    patcher = _Patcher(doc, registry, actor)
    original_blocks = patcher.view.blocks
    applied: list[int] = []
    skipped: list[SkippedOp] = []

    def skip_all(code: str, reason: str, hint: str) -> None:
        for index, op in enumerate(op_list):
            skipped.append(
                SkippedOp(
                    index=index, op=redacted_op(op, registry, original_blocks), code=code, reason=reason, hint=hint
                )
            )

    if expected_version is not None and expected_version != doc.content_hash():
        skip_all(
            "version_conflict",
            f"the document changed: it is at version {doc.content_hash()}, not {short(expected_version)}",
            "read the current document and send ops against it",
        )
    elif len(op_list) > MAX_OPS:
        skip_all(
            "too_large",
            f"{len(op_list)} ops in one call; the limit is {MAX_OPS}",
            f"send at most {MAX_OPS} ops per call",
        )
    else:
        for index, op in enumerate(op_list):
            shown = redacted_op(op, registry, patcher.view.blocks)
            try:
                patcher.apply(op)
            except _Skip as skip:
                skipped.append(SkippedOp(index=index, op=shown, code=skip.code, reason=skip.reason, hint=skip.hint))
            else:
                applied.append(index)
    new_doc = WorkflowDocument.model_validate(patcher.view.to_data()) if applied else doc.model_copy(deep=True)
    data = new_doc.to_data()
    problems = Checker(registry).check_document(DocumentView(data), data["blocks"])
    return PatchResult(
        document=new_doc,
        applied=applied,
        skipped=skipped,
        summary=summarize(op_list, applied, skipped, problems),
        problems=[p.to_dict() for p in problems],
        version=new_doc.content_hash(),
    )
