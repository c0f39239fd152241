"""The webhooks CLI through the real ``plait`` executable."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

APP = """
import plait
engine = plait.Engine("sqlite:///cli.db", worker=False)
"""


def plait_cli(tmp_path: Path, *args: str, secret: str | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("plait")
    assert exe is not None
    env = {**os.environ, "PLAIT_APP": "cliapp:engine"}
    if secret:
        env["PLAIT_WEBHOOK_SECRET"] = secret
    return subprocess.run([exe, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def test_add_list_remove_a_webhook_without_ever_printing_its_secret(tmp_path: Path) -> None:
    (tmp_path / "cliapp.py").write_text(APP)
    secret = "cli-secret-0123456789abcdef"
    added = plait_cli(tmp_path, "webhooks", "add", "http://127.0.0.1:9/hook", "-t", "run.failed", secret=secret)
    assert added.returncode == 0, added.stderr
    hook_id = added.stdout.strip()
    listed = plait_cli(tmp_path, "webhooks", "list")
    assert hook_id in listed.stdout and "run.failed" in listed.stdout
    assert secret not in added.stdout + added.stderr + listed.stdout + listed.stderr
    assert plait_cli(tmp_path, "webhooks", "remove", hook_id).returncode == 0
    missing = plait_cli(tmp_path, "webhooks", "remove", hook_id)
    assert missing.returncode == 2 and "no webhook" in missing.stderr
    assert plait_cli(tmp_path, "webhooks", "dead-letters").stdout == ""
