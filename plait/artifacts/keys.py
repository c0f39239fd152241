"""Artifact keys: short names, safe as a path segment in any blob store."""

from __future__ import annotations

import re

from plait.errors import ArtifactInvalid

MAX_KEY_LENGTH = 256
# Segments separated by "/", each starting with a letter, digit or "_": no "..", no absolute path,
# no NUL or other control characters, nothing a file system or an object store reads specially.
_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*$")


def check_key(key: object) -> str:
    """``key`` when it can name an artifact; raises ArtifactInvalid saying what is allowed."""
    if not isinstance(key, str):
        raise ArtifactInvalid(f"an artifact key must be a string, got {type(key).__name__}")
    if len(key) > MAX_KEY_LENGTH:
        raise ArtifactInvalid(f"artifact key is {len(key)} characters, over the limit of {MAX_KEY_LENGTH}")
    if not _KEY.match(key):
        raise ArtifactInvalid(
            f"artifact key {key[:80]!r} is not valid: use letters, digits, '_', '-' and '.', with '/' between "
            "parts (e.g. 'reports/summary.json'); a part must not start with '.' or '-'"
        )
    return key
