"""Shared fixtures: every test gets its own real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import plait


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'plait.db'}"


@pytest.fixture
def engine(db_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(db_url) as engine:
        yield engine
