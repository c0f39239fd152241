"""Templates in document values: ``{{input.email}}``, ``{{vars.channel}}``, ``{{enrich.name}}``, ``{{env.APP_URL}}``.

A value that is exactly one template keeps the referenced value's type; templates
inside a longer string render as text. Rendering is one pass over the document's
own text: a rendered value (a block output, an event payload) is data and is
never scanned for templates again. Paths read JSON data only (dict keys and
list indexes), never attributes, so ``{{x.__class__}}`` is just a missing key.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

TEMPLATE: Final = re.compile(r"\{\{([^{}]*)\}\}")
_SEGMENT: Final = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

NAMESPACES: Final = ("input", "vars", "env")
"""Template roots that are not block ids."""

# How deep rendering and scanning follow nested params: deeper data is refused at validation.
MAX_DEPTH: Final = 32


@dataclass(frozen=True)
class Reference:
    """A parsed template: its root (``input``, ``vars``, ``env`` or a block id) and the field path."""

    root: str
    path: tuple[str, ...]

    @property
    def text(self) -> str:
        return "{{" + ".".join((self.root, *self.path)) + "}}"


@functools.lru_cache(maxsize=4096)
def parse_reference(inner: str) -> Reference | None:
    """``"enrich.name"`` -> Reference; None when it is not a dotted path of plain names."""
    parts = inner.strip().split(".")
    if not all(_SEGMENT.match(part) for part in parts):
        return None
    return Reference(parts[0], tuple(parts[1:]))


@dataclass(frozen=True)
class Found:
    """One template in a value: where it is (a path like ``params.text``) and what it says."""

    where: str
    inner: str
    reference: Reference | None
    whole: bool


def find_templates(value: Any, where: str) -> Iterator[Found]:
    """Every template inside ``value`` (nested dicts, lists and strings); keys are data, not templates."""
    if isinstance(value, str):
        if "{{" in value:
            yield from _in_text(value, where)
        return
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, at, depth = stack.pop()
        if depth >= MAX_DEPTH:
            continue
        pairs = item.items() if isinstance(item, dict) else enumerate(item) if isinstance(item, list) else ()
        nested = []
        for key, sub in pairs:
            # Paths are built only where a template is: most values hold none.
            if isinstance(sub, str):
                if "{{" in sub:
                    yield from _in_text(sub, f"{at}.{key}" if isinstance(item, dict) else f"{at}[{key}]")
            elif isinstance(sub, dict | list):
                nested.append((sub, f"{at}.{key}" if isinstance(item, dict) else f"{at}[{key}]", depth + 1))
        stack.extend(reversed(nested))


def _in_text(text: str, where: str) -> Iterator[Found]:
    whole = whole_template(text) is not None
    for match in TEMPLATE.finditer(text):
        yield Found(where, match.group(1), parse_reference(match.group(1)), whole)


@functools.lru_cache(maxsize=4096)
def whole_template(text: str) -> Reference | None:
    """The reference when ``text`` is exactly one template (keeps its type when rendered)."""
    match = TEMPLATE.fullmatch(text) if text.startswith("{{") else None
    return parse_reference(match.group(1)) if match else None


def lookup_path(data: Any, path: tuple[str, ...]) -> Any:
    """Follow ``path`` through JSON data: dict keys and list indexes; None where it leads nowhere."""
    for segment in path:
        if isinstance(data, dict):
            data = data.get(segment)
        elif isinstance(data, list) and segment.isdigit() and int(segment) < len(data):
            data = data[int(segment)]
        else:
            return None
    return data


def as_text(value: Any) -> str:
    """How a value reads inside a longer string: text as is, null as empty, the rest as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


Resolver = Callable[[Reference], Any]


def render(value: Any, resolve: Resolver, depth: int = 0) -> Any:
    """``value`` with every template replaced by what ``resolve`` gives for it (one pass)."""
    if isinstance(value, str):
        if "{{" not in value:
            return value
        whole = whole_template(value)
        if whole is not None:
            return resolve(whole)

        def one(match: re.Match[str]) -> str:
            reference = parse_reference(match.group(1))
            return match.group(0) if reference is None else as_text(resolve(reference))

        return TEMPLATE.sub(one, value)
    if depth >= MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {k: render(v, resolve, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, resolve, depth + 1) for v in value]
    return value


def rename_root(value: Any, old: str, new: str, depth: int = 0) -> Any:
    """``value`` with references rooted at block ``old`` rewritten to ``new`` (rename_block)."""
    if isinstance(value, str):
        if "{{" not in value:
            return value

        def one(match: re.Match[str]) -> str:
            reference = parse_reference(match.group(1))
            if reference is None or reference.root != old:
                return match.group(0)
            return Reference(new, reference.path).text

        return TEMPLATE.sub(one, value)
    if depth >= MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {k: rename_root(v, old, new, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [rename_root(v, old, new, depth + 1) for v in value]
    return value


def roots(value: Any) -> set[str]:
    """The roots (block ids and namespaces) that ``value``'s templates reference."""
    return {f.reference.root for f in find_templates(value, "") if f.reference is not None}
