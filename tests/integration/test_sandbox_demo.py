"""The README's run command, as a newcomer runs it: the sandbox demo shows a thread getting
its linked ticket, through the real broker and real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_threadlink_run_shows_the_thread_with_its_card(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINK_") or k == "THREADLINK_SPECS_DIR"}
    env["THREADLINK_RUN_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "threadlink", "run", "--once"],
        cwd=tmp_path,  # no threadlink.yaml here: the sandbox
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "running the sandbox demo" in out
    assert "using the local broker already running" in out  # and so it leaves it running
    assert "the thread got its linked ticket" in out
    assert "[threadlink] DEMO-1: Checkout fails with HTTP 500 for EU customers (In Progress)" in out
    assert "[threadlink] OPS-7: Payment provider timeouts (To Do)" in out
    assert "Jira DEMO-1 heard the thread back" in out
    assert "Traceback" not in out + result.stderr
    assert not (tmp_path / "sandbox" / "effective-config.yaml").exists()  # secrets file removed on exit
