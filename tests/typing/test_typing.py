"""The builder's static typing: ok.py must pass mypy --strict, each fail_*.py must fail where marked.

A marked line ends with ``# error: CODE``; every marked line must produce that
mypy error code, and no unmarked line may produce any error.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

HERE = Path(__file__).parent
FILES = [HERE / "ok.py", *sorted(HERE.glob("fail_*.py"))]
MARK = re.compile(r"#\s*error:\s*([a-z-]+)")
ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")


@pytest.fixture(scope="module")
def mypy_errors() -> dict[str, set[tuple[int, str]]]:
    """mypy --strict over every file at once (one run keeps the suite fast)."""
    stdout, stderr, _ = api.run(["--strict", "--config-file", "", *map(str, FILES)])
    assert "error: " in stdout or not stderr, stderr
    found: dict[str, set[tuple[int, str]]] = {path.name: set() for path in FILES}
    for line in stdout.splitlines():
        match = ERROR.match(line)
        if match:
            found[Path(match["file"]).name].add((int(match["line"]), match["code"]))
    return found


def test_ok_file_passes_strict_mypy(mypy_errors: dict[str, set[tuple[int, str]]]) -> None:
    assert mypy_errors["ok.py"] == set()


@pytest.mark.parametrize("path", FILES[1:], ids=lambda p: p.stem)
def test_fail_file_fails_exactly_where_marked(path: Path, mypy_errors: dict[str, set[tuple[int, str]]]) -> None:
    expected = {
        (number, match[1])
        for number, text in enumerate(path.read_text().splitlines(), start=1)
        if (match := MARK.search(text))
    }
    assert expected, f"{path.name} marks no line with '# error: CODE'"
    errors = mypy_errors[path.name]
    assert expected <= errors, f"mypy no longer catches: {sorted(expected - errors)}"
    marked_lines = {line for line, _ in expected}
    assert {e for e in errors if e[0] not in marked_lines} == set()
