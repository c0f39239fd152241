"""Shared fixtures: every test gets its own real database.

``db_url`` runs a test on every backend: a fresh SQLite file, and a fresh
PostgreSQL schema when ``PLAIT_TEST_POSTGRES_URL`` is set. Without it the
PostgreSQL half skips locally and fails under CI (``CI=true``).
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import plait

POSTGRES_URL = os.environ.get("PLAIT_TEST_POSTGRES_URL")


def postgres_base_url() -> str:
    if POSTGRES_URL:
        return POSTGRES_URL
    if os.environ.get("CI") == "true":
        pytest.fail("PLAIT_TEST_POSTGRES_URL is not set under CI: PostgreSQL tests must run (see .ci/run)")
    pytest.skip("PostgreSQL tests need PLAIT_TEST_POSTGRES_URL, e.g. postgresql://postgres@127.0.0.1:5432/test")


def with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'plait.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    base = postgres_base_url()
    schema = f"plait_test_{uuid.uuid4().hex[:12]}"
    yield with_schema(base, schema)
    drop_schema(base, schema)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'plait.db'}"
        return
    base = postgres_base_url()
    schema = f"plait_test_{uuid.uuid4().hex[:12]}"
    yield with_schema(base, schema)
    drop_schema(base, schema)


@pytest.fixture
def engine(db_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(db_url) as engine:
        yield engine


def run_sql(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement against the test database directly (``?`` placeholders), for inspecting or
    forcing states the API cannot reach (a foreign lease, say)."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return conn.execute(query, params).fetchall()
    import psycopg

    from plait.store.postgres import split_schema

    plain, schema = split_schema(url, None)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        cursor = conn.execute(query.replace("%", "%%").replace("?", "%s"), params)
        return cursor.fetchall() if cursor.description else []
