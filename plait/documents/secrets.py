"""Where hidden connector params come from: the engine's secrets, read at each attempt.

Engines register their secret source against their worker (the host of every
execution), so two engines in one process keep their own secrets. Without one,
a secret is the environment variable of the same name.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plait.context import Context

SecretSource = Mapping[str, str] | Callable[[str], "str | None"]
"""``Engine(secrets=...)``: a mapping, or a function from a secret's name to its value (None if unset)."""

_SOURCES: weakref.WeakKeyDictionary[object, SecretSource] = weakref.WeakKeyDictionary()

REDACTED = "[hidden]"


def use_secrets(host: object, source: SecretSource | None) -> None:
    """Make ``source`` the secrets of every run executed by ``host`` (an engine's worker)."""
    if source is None:
        _SOURCES.pop(host, None)
    else:
        _SOURCES[host] = source


def lookup_secret(source: SecretSource | None, name: str) -> str | None:
    """The value of secret ``name`` from ``source``, else the environment."""
    if source is None:
        return os.environ.get(name)
    value = source.get(name) if isinstance(source, Mapping) else source(name)
    return None if value is None else str(value)


def read_secret(ctx: Context, name: str) -> str | None:
    """Secret ``name`` for the run ``ctx`` belongs to (its engine's secrets, else the environment)."""
    host: Any = ctx._execution.host  # the worker running this attempt: whose engine's secrets apply
    return lookup_secret(_SOURCES.get(host), name)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by ``[hidden]``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text
