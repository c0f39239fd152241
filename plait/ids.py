"""Identifier types, distinct to the type checker so swapped arguments are caught."""

from __future__ import annotations

import os
import re
import secrets
import time
from typing import NewType

RunId = NewType("RunId", str)
StepId = NewType("StepId", str)
WorkflowId = NewType("WorkflowId", str)

# Step ids appear inside step keys ("enrich[3]", "refine#2", "child/fetch"),
# so they must not contain the characters that build those keys.
# fullmatch, not match with "$": "$" also matches before a trailing newline.
_ID_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,127}")


def is_valid_id(value: str) -> bool:
    """Whether ``value`` can name a step or a workflow."""
    return _ID_PATTERN.fullmatch(value) is not None


# A run id chosen by the caller: printable text (no control characters, which
# PostgreSQL refuses as NUL and logs would print raw, and no lone surrogates,
# which no database can store).
_RUN_ID_PATTERN = re.compile(r"[^\x00-\x1f\x7f\ud800-\udfff]{1,255}")


def is_valid_run_id(value: str) -> bool:
    """Whether ``value`` can be a caller-chosen run id."""
    return _RUN_ID_PATTERN.fullmatch(value) is not None


def new_run_id() -> RunId:
    """A sortable, unique run id: millisecond time then randomness."""
    return RunId(f"{int(time.time() * 1000):012x}{secrets.token_hex(8)}")


def process_owner(host: str) -> str:
    """A lease owner name for one worker of this process: host, pid, the pid's start time, and a random tag.

    The start time tells a dead process from a new one that reused its pid;
    the tag keeps two engines of one process from sharing (and releasing)
    each other's leases.
    """
    return f"{host}:{os.getpid()}:{process_start_time(os.getpid())}:{secrets.token_hex(4)}"


def process_start_time(pid: int) -> str:
    """The kernel's start tick of ``pid`` ("" where /proc does not exist)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            # The command name may contain spaces, so split after its closing ')'.
            fields = stat.read().rsplit(")", 1)[1].split()
        return fields[19]
    except (OSError, IndexError):
        return ""


def is_owner_alive(owner: str, host: str) -> bool | None:
    """Whether the lease owner ``owner`` still runs; None when it is on another host."""
    parts = owner.split(":")
    if len(parts) not in (3, 4) or parts[0] != host:  # 3: owners written before the per-engine tag
        return None
    pid_text, started = parts[1], parts[2]
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):
        return True
    return process_start_time(pid) == started
