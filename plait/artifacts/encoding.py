"""How artifact values become bytes and come back as the kind they were put as."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_jsonable_python

from plait.errors import ArtifactInvalid

DEFAULT_TYPES = {"bytes": "application/octet-stream", "text": "text/plain; charset=utf-8", "json": "application/json"}
MAX_CONTENT_TYPE_LENGTH = 255


def encode(key: str, data: Any, content_type: str | None) -> tuple[str, str, bytes]:
    """(kind, content type, bytes) of ``data``: bytes as they are, str as UTF-8, anything else as JSON."""
    try:
        if isinstance(data, bytes | bytearray | memoryview):
            kind, raw = "bytes", bytes(data)
        elif isinstance(data, str):
            kind, raw = "text", data.encode("utf-8")
        elif isinstance(data, BaseModel):
            kind, raw = "json", data.model_dump_json().encode()
        else:
            kind, raw = "json", json.dumps(to_jsonable_python(data), separators=(",", ":")).encode()
    except (UnicodeEncodeError, PydanticSerializationError, TypeError, ValueError) as exc:
        raise ArtifactInvalid(
            f"artifact {key!r} cannot be stored ({exc}): put bytes, a str, a Pydantic model or JSON-able data"
        ) from exc
    chosen = content_type or DEFAULT_TYPES[kind]
    if len(chosen) > MAX_CONTENT_TYPE_LENGTH or not chosen.isprintable() or "/" not in chosen:
        raise ArtifactInvalid(f"artifact {key!r}: content_type {chosen[:80]!r} is not a media type like 'image/png'")
    return kind, chosen, raw


def decode(kind: str, raw: bytes) -> Any:
    """The value as it was put: bytes, str, or the JSON (a model comes back as its dict)."""
    if kind == "text":
        return raw.decode("utf-8")
    if kind == "json":
        return json.loads(raw)
    return raw
