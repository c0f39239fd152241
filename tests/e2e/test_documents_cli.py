"""``plait documents ...`` through the real executable."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli import plait_cli

APP = """
import sys
sys.path.insert(0, {root!r})
import plait
from tests.document_kit import SECRET, count, enrich, slack

engine = plait.Engine("sqlite:///docs.db", secrets={{"SLACK_TOKEN": SECRET}})
engine.register(enrich, slack, count)
"""


def test_save_apply_show_list_and_run(tmp_path: Path) -> None:
    from tests.document_kit import lead_document

    root = str(Path(__file__).resolve().parents[2])
    (tmp_path / "cliapp.py").write_text(APP.format(root=root))
    (tmp_path / "doc.json").write_text(json.dumps(lead_document()))
    saved = plait_cli(tmp_path, "documents", "save", "@doc.json")
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout.strip() == "lead-notifier version 1"

    ops = [
        {"op": "update_block", "id": "notify", "params": {"text": "CLI {{enrich.name}}"}},
        {"op": "update_block", "id": "ghost", "params": {}},
    ]
    applied = plait_cli(tmp_path, "documents", "apply", "lead-notifier", json.dumps(ops), "--actor", "llm")
    assert applied.returncode == 1  # one op was skipped
    assert "1 of 2 operations applied" in applied.stdout and "[block_not_found]" in applied.stdout
    assert "lead-notifier is at version 2" in applied.stdout

    listed = plait_cli(tmp_path, "documents", "list", "--json")
    assert [(d["id"], d["version"]) for d in json.loads(listed.stdout)] == [("lead-notifier", 2)]
    shown = plait_cli(tmp_path, "documents", "show", "lead-notifier")
    assert json.loads(shown.stdout)["blocks"][1]["params"]["text"] == "CLI {{enrich.name}}"
    history = json.loads(plait_cli(tmp_path, "documents", "show", "lead-notifier", "--versions").stdout)
    assert [v["actor"] for v in history] == ["user", "llm"]

    ran = plait_cli(tmp_path, "documents", "run", "lead-notifier", "--input", '{"email": "a@acme.com"}', "--wait")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["sent"] == "CLI Acme"

    invalid = plait_cli(tmp_path, "documents", "save", json.dumps(lead_document(output="{{nope.x}}")))
    assert invalid.returncode == 2 and "error [document.invalid]" in invalid.stderr and "output" in invalid.stderr
