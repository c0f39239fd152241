"""Specs: a client engine with no code starts runs that a worker process implementing the spec executes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

import plait
from tests.conftest import run_sql
from tests.integration.email_spec import Delivered, SendEmail, send_email

ROOT = Path(__file__).resolve().parents[2]
WORKER_APP = Path(__file__).with_name("email_worker_app.py")


@pytest.fixture
def worker(db_url: str) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(WORKER_APP), db_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
    yield proc
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=20)  # also closes its pipes
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def count_runs(db_url: str) -> int:
    return int(run_sql(db_url, "SELECT count(*) FROM plait_runs")[0][0])


def test_a_client_starts_a_spec_and_a_worker_process_implements_it(db_url: str, worker: subprocess.Popen[str]) -> None:
    assert "tests.integration.email_worker_app" not in sys.modules  # the client has no code of the workflow
    with plait.Engine(db_url, worker=False) as client:
        run = client.start(send_email, SendEmail(to="ada@example.com", subject="hi"))
        result = run.result(timeout=30)
        assert isinstance(result, Delivered)  # typed by the spec's output
        assert result.message_id == "<ada@example.com:hi>"
        assert result.worker_pid == worker.pid
        info = run.info()
        assert (info.workflow_id, info.workflow_version) == ("send-email", "1")


def test_a_client_starts_a_named_version_of_a_registered_spec(db_url: str, worker: subprocess.Popen[str]) -> None:
    with plait.Engine(db_url, worker=False) as client:
        client.register(send_email)
        run = client.start("send-email@1", {"to": "bob@example.com", "subject": "yo"})
        assert run.result(timeout=30) == Delivered(message_id="<bob@example.com:yo>", worker_pid=worker.pid)
        by_id = client.start("send-email", {"to": "c@example.com", "subject": "x"})
        assert by_id.result(timeout=30).message_id == "<c@example.com:x>"


def test_bad_input_for_a_spec_stores_nothing(db_url: str) -> None:
    with plait.Engine(db_url, worker=False) as client:
        with pytest.raises(plait.InputValidationError, match="send-email"):
            client.start(send_email, {"to": "ada@example.com"})
        with pytest.raises(plait.InputValidationError, match="spec"):
            client.start(send_email, {"to": "a", "subject": "b"}, config={"deliver": {}})
    assert count_runs(db_url) == 0


def test_a_spec_run_waits_for_an_implementing_worker(db_url: str) -> None:
    # A worker engine without the implementation must not take the run: it waits, then the right worker runs it.
    with plait.Engine(db_url, poll_interval=0.02) as other:
        run = other.start(send_email, {"to": "w@example.com", "subject": "s"})
        with pytest.raises(TimeoutError):
            run.result(timeout=0.5)
        assert run.status in (plait.RunStatus.PENDING, plait.RunStatus.WAITING)
    from tests.integration.email_worker_app import implementation

    with plait.Engine(db_url) as implementer:
        implementer.register(implementation)
        assert implementer.get_run(run.id).result(timeout=30).message_id == "<w@example.com:s>"


def test_the_implementation_takes_id_types_and_version_from_the_spec() -> None:
    from tests.integration.email_worker_app import implementation

    assert (implementation.id, implementation.version) == ("send-email", "1")
    assert implementation.input_type is SendEmail and implementation.output_type is Delivered


def test_an_implementation_whose_output_does_not_fit_the_spec_is_refused() -> None:
    class Other(BaseModel):
        n: int

    @plait.step
    def wrong(email: SendEmail) -> Other:
        return Other(n=1)

    with pytest.raises(plait.WorkflowDefinitionError, match="output"):
        plait.workflow(send_email).then(wrong).commit()
    with pytest.raises(plait.WorkflowDefinitionError, match="from the spec"):
        plait.workflow(send_email, version="2")  # type: ignore[call-overload]


def test_a_spec_without_version_is_versioned_by_its_schemas() -> None:
    a = plait.spec("s", input=SendEmail, output=Delivered)
    b = plait.spec("s", input=SendEmail, output=Delivered)
    c = plait.spec("s", input=SendEmail, output=SendEmail)
    assert a.version == b.version != c.version
    with pytest.raises(plait.WorkflowDefinitionError):
        plait.spec("bad id", input=SendEmail, output=Delivered)
    with pytest.raises(plait.WorkflowDefinitionError):
        plait.spec("s", input=SendEmail, output=Delivered, version="1@2")
