"""The README's example and the examples/ scripts run as a user would run them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import plait

ROOT = Path(__file__).resolve().parents[2]


def run_python(code_or_file: str | Path, cwd: Path) -> str:
    args = (
        [sys.executable, str(code_or_file)] if isinstance(code_or_file, Path) else [sys.executable, "-c", code_or_file]
    )
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_readme_first_example_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```python\n(.*?)```", readme, re.S)
    assert first_block is not None
    out = run_python(first_block.group(1), tmp_path)
    assert re.fullmatch(r"Welcome ada@example\.com! \(ref [0-9a-f]+:write_welcome\)", out.strip()), out
    assert (tmp_path / "plait.db").exists()


def test_quickstart_example_runs(tmp_path: Path) -> None:
    script = tmp_path / "quickstart.py"
    shutil.copy(ROOT / "examples" / "quickstart.py", script)
    out = run_python(script, tmp_path)
    assert "succeeded: ada@example.com" in out
    assert "write_welcome" in out


def test_console_script_reports_the_version() -> None:
    exe = shutil.which("plait")
    assert exe is not None, "the plait console script is not installed (pip install -e .)"
    done = subprocess.run([exe, "version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    assert done.stdout.strip() == plait.__version__


def test_lead_notifier_document_example_runs(tmp_path: Path) -> None:
    script = tmp_path / "lead_notifier.py"
    shutil.copy(ROOT / "examples" / "lead_notifier.py", script)
    out = run_python(script, tmp_path)
    assert (
        out.strip() == "document version 1: {'company': 'Example', 'notified': 'New lead: Example (ada@example.com)'}"
    )
    assert "xoxb-example" not in (tmp_path / "plait-documents.db").read_bytes().decode("utf-8", "replace")


def test_email_campaign_example_runs_by_http_and_cron(tmp_path: Path) -> None:
    out = run_python(ROOT / "examples" / "email_campaign.py", tmp_path).splitlines()
    assert out[0] == (
        "http: {'subject': 'Your trial', 'sent': 3, "
        "'recipients': ['ada@example.com', 'grace@example.com', 'linus@example.com']}"
    )
    assert re.fullmatch(r"cron: next \d{4}-\d\d-\d\dT0[78]:00:00\+00:00", out[1]), out[1]  # Monday 09:00 in Paris
    assert out[2] == "cron: {'subject': 'We miss you', 'sent': 1, 'recipients': ['ken@example.com']}"


def test_drip_campaign_example_retries_hooks_children_and_triggers(tmp_path: Path) -> None:
    out = run_python(ROOT / "examples" / "drip_campaign.py", tmp_path).splitlines()
    assert out == [
        "sent: [('ada@example.com', 1), ('grace@example.com', 2), ('linus@example.com', 1)]",
        "summary: spring-launch: 3 sent, retried ['grace@example.com']",
        "child runs: 3",
        "hooks: {'created:campaign_summary': 1, 'created:drip_campaign': 1, 'finished:campaign_summary': 1, "
        "'finished:deliver': 3, 'finished:drip_campaign': 1, 'step_error:deliver': 1}",
    ]


def test_data_pipeline_recipes_example_runs(tmp_path: Path) -> None:
    script = tmp_path / "data_pipeline.py"
    shutil.copy(ROOT / "examples" / "data_pipeline.py", script)
    lines = run_python(script, tmp_path).strip().splitlines()
    assert lines[0].startswith("small: recipe 'pipeline-fast'")
    assert lines[1].startswith("large: recipe 'pipeline-thorough'")
    assert lines[2].startswith("medium: recipe 'pipeline-default'")
    assert lines[4] == "run thorough: count=3 total=14.3"  # -1 kept: 'clean' was skipped
    assert "('clean', 'skipped')" in lines[5]
    assert lines[6].startswith("refused: cannot skip 'score': 'summarize_scored' needs its output (Scored)")
    assert lines[7] == "before any fast run: no history: no succeeded run of recipe 'pipeline-fast' yet"
    assert lines[8] == "after: 3 runs of pipeline-fast; 3 listed"
