"""The public namespace is exactly what __all__ promises, and every error has a stable code."""

from __future__ import annotations

import inspect

import plait
import plait.errors


def test_all_matches_the_public_namespace() -> None:
    # Submodules (plait.testing, plait.webhooks, ...) are importable but not part of the flat API.
    public = {name for name in dir(plait) if not name.startswith("_") and not inspect.ismodule(getattr(plait, name))}
    assert public | {"__version__"} == set(plait.__all__)
    assert callable(plait.workflow)  # the builder function, not the subpackage of the same name


def test_every_public_symbol_has_a_docstring() -> None:
    for name in plait.__all__:
        if name.startswith("_") or name == "workflow":
            continue
        assert inspect.getdoc(getattr(plait, name)), name


def test_every_error_has_a_unique_dotted_code() -> None:
    errors = [cls for cls in vars(plait.errors).values() if inspect.isclass(cls) and issubclass(cls, plait.PlaitError)]
    codes = [cls.code for cls in errors]
    assert len(codes) == len(set(codes))
    assert all("." in code for code in codes)
    assert plait.errors.RunCancelledSignal.__mro__[1] is BaseException


def test_error_message_carries_code_and_advice() -> None:
    error = plait.WorkflowNotFound("workflow 'x' is not registered; call engine.register(workflow) first")
    assert str(error).startswith("WorkflowNotFound [workflow.not_found]: ")
    assert error.to_dict() == {"code": "workflow.not_found", "message": error.message}
