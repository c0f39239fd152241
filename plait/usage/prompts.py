"""The stored text of a prompt or a response: JSON, with secret values replaced."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr

REDACTED = "[redacted]"


def _is_hidden(metadata: list[Any]) -> bool:
    # plait.Hidden marks a connector parameter whose value comes from a secret.
    return any(type(item).__name__ == "Hidden" for item in metadata)


def _clean(value: Any) -> Any:
    if isinstance(value, SecretStr | SecretBytes):
        return REDACTED
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        return {
            name: REDACTED if name in fields and _is_hidden(fields[name].metadata) else _clean(getattr(value, name))
            for name in fields
        }
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def stored_text(value: Any) -> str | None:
    """``value`` as stored: a string as is, anything else as JSON; SecretStr and Hidden values never."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(_clean(value), default=str)
