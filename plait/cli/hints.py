"""Error messages as the command line tells them: hints name ``plait`` commands, not Python calls.

The engine's messages speak to Python callers ("call engine.retry('r1')"); the
CLI reports the same error and code with the command a shell user would type.
"""

from __future__ import annotations

import re

# (pattern in an engine message, what the CLI says instead)
_HINTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"call engine\.retry\('([^']+)'\)"), r"run `plait runs retry \1`"),
    (re.compile(r"\(engine\.list_runs\(\)\)"), "(`plait runs list`)"),
    (re.compile(r"see engine\.schedules\(\)"), "see `plait schedules list`"),
    (re.compile(r"see engine\.webhooks\(\)"), "see `plait webhooks list`"),
    (
        re.compile(r"call engine\.register\(workflow\) first"),
        "register it in the app module you pass with --app (engine.register(workflow)); "
        "`plait workflows list --app ...` shows what the app registers",
    ),
    (
        re.compile(r"save one with engine\.save_document\(doc\)"),
        "save one with `plait documents save @doc.json --app ...`",
    ),
    (re.compile(r"or engine\.work\(\)"), "(or engine.work() in your app)"),
]


def cli_message(message: str) -> str:
    """``message`` with its Python hints replaced by the matching ``plait`` commands."""
    for pattern, replacement in _HINTS:
        message = pattern.sub(replacement, message)
    return message
