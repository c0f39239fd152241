"""Ids are matched whole: a trailing newline (which a "$" anchor lets through) is refused."""

from __future__ import annotations

import pytest

import plait
from plait.ids import is_valid_id, is_valid_run_id
from plait.store.postgres import split_schema


def test_an_id_with_a_trailing_newline_is_not_valid() -> None:
    assert is_valid_id("enrich")
    assert not is_valid_id("enrich\n")
    assert not is_valid_run_id("order-1\n")


def _same(ctx: plait.Context, value: int) -> int:
    return value


def test_step_and_workflow_ids_with_a_trailing_newline_are_refused() -> None:
    with pytest.raises(plait.WorkflowDefinitionError):
        plait.create_step(id="charge\n", input=int, output=int, execute=_same)
    with pytest.raises(plait.WorkflowDefinitionError):
        plait.workflow("flow\n", input=int)


def test_a_postgres_schema_name_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(plait.StoreUnavailable, match="schema name"):
        split_schema("postgresql://localhost/db", "plait\n")
