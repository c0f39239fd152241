"""What is wrong with a document: a code, a path (``blocks[2].params.text``), a reason and a hint."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from plait.errors import DocumentInvalid


@dataclass(frozen=True)
class Problem:
    """One problem in a document; ``code`` is one of the patch skip codes."""

    path: str
    code: str
    reason: str
    hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "code": self.code, "reason": self.reason, "hint": self.hint}

    def line(self) -> str:
        where = f"{self.path}: " if self.path else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}[{self.code}] {self.reason}{hint}"


def path_of(loc: Sequence[int | str]) -> str:
    """Pydantic's ``loc`` as a path: ``("blocks", 2, "params")`` -> ``blocks[2].params``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def document_invalid(problems: Iterable[Problem], document_id: str | None = None) -> DocumentInvalid:
    """The DocumentInvalid error for ``problems``: its message lists every one with its path."""
    found = list(problems)
    name = f"document '{document_id}'" if document_id else "the document"
    lines = "\n".join(f"  - {p.line()}" for p in found)
    message = f"{name} has {len(found)} problem{'s' if len(found) != 1 else ''}; fix them and try again:\n{lines}"
    return DocumentInvalid(message, problems=[p.to_dict() for p in found])
