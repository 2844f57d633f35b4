"""`threadlink run` with a config file: topics, both processes under one supervisor, and a
clean stop on SIGTERM (what a service manager sends) that leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sandbox.demo import free_port
from tests.integration.kafka_helpers import wait_for

pytestmark = pytest.mark.integration

CONFIG = """
kafka:
  bootstrap_servers: {bootstrap}
  namespace: {namespace}
http:
  port: {port}
streams:
  app_id: {namespace}-streams
  web_port: 0
  state_dir: {state}
connectors:
  slack:
    signing_secret: run-test-signing-secret
    bot_token: xoxb-run-test
    api_base_url: http://127.0.0.1:9/api
    bot_user_id: U0BOT
    bot_id: B0BOT
    workspace_url: https://acme.slack.com/
  jira:
    base_url: http://127.0.0.1:9
    email: bot@example.com
    api_token: run-test-token
    webhook_secret: run-test-webhook-secret
"""


def test_run_supervises_both_processes_and_stops_cleanly(kafka_bootstrap: str, namespace: str, tmp_path: Path) -> None:
    port = free_port(18899)
    config = tmp_path / "threadlink.yaml"
    config.write_text(
        CONFIG.format(bootstrap=kafka_bootstrap, namespace=f"{namespace}-run", port=port, state=tmp_path / "streams")
    )
    log = tmp_path / "run.log"
    env = {**os.environ, "THREADLINK_RUN_DIR": str(tmp_path / "run")}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "threadlink", "--config", str(config), "run"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        wait_for(lambda: "running; Ctrl-C stops" in log.read_text(), timeout_s=120, what="threadlink run to start")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        children = subprocess.run(
            ["pgrep", "-f", f"threadlink --config {tmp_path}/run/"], capture_output=True, text=True
        )
        assert len(children.stdout.split()) == 2, children.stdout  # connectors + streams
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert time.monotonic() - started < 45
        left = subprocess.run(["pgrep", "-f", f"threadlink --config {tmp_path}/run/"], capture_output=True, text=True)
        assert left.stdout.strip() == "", left.stdout
        assert "Traceback" not in log.read_text()
        assert not (tmp_path / "run" / "effective-config.yaml").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the children go with it (parent-death signal)
            proc.wait()


def test_children_do_not_outlive_a_killed_supervisor(kafka_bootstrap: str, namespace: str, tmp_path: Path) -> None:
    port = free_port(18898)
    config = tmp_path / "threadlink.yaml"
    config.write_text(
        CONFIG.format(bootstrap=kafka_bootstrap, namespace=f"{namespace}-kill", port=port, state=tmp_path / "streams")
    )
    log = tmp_path / "run.log"
    env = {**os.environ, "THREADLINK_RUN_DIR": str(tmp_path / "run")}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "threadlink", "--config", str(config), "run"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    children = f"threadlink --config {tmp_path}/run/"
    try:
        wait_for(lambda: "running; Ctrl-C stops" in log.read_text(), timeout_s=120, what="threadlink run to start")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # no chance to clean up
        proc.wait()
    wait_for(
        lambda: subprocess.run(["pgrep", "-f", children], capture_output=True).returncode == 1,
        timeout_s=60,
        what="the children to stop after their supervisor was killed",
    )
