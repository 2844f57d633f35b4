"""`threadlink status` against a running deployment (real broker, the connectors and streams
processes, the Slack and Jira stand-ins): all up and exit 0; once Slack refuses the sink's
token, the connectors process is degraded with the reason and the exit is 1."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.integration.kafka_helpers import wait_for
from tests.integration.sandbox_deployment import SandboxDeployment, start_sandbox, stop_sandbox

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture(scope="module")
def sandbox(
    kafka_bootstrap: str, namespace: str, tmp_path_factory: pytest.TempPathFactory, vendor_specs: str
) -> Iterator[SandboxDeployment]:
    deployment = start_sandbox(kafka_bootstrap, f"{namespace}-status", tmp_path_factory.mktemp("deployment"))
    yield deployment
    stop_sandbox(deployment)


def status(sandbox: SandboxDeployment, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`threadlink status` with a config naming what the deployment's does (its broker,
    namespace, ports and connectors); the deployment's own file is gone (it held the secrets)."""
    settings = sandbox.settings
    config = tmp_path / "status.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "kafka": {"bootstrap_servers": settings.kafka.bootstrap_servers, "namespace": settings.kafka.namespace},
                "http": {"port": settings.http.port},
                "streams": {"app_id": settings.streams.app_id, "web_port": settings.streams.web_port},
                "connectors": {
                    "slack": {"signing_secret": "x", "bot_token": "xoxb-x"},
                    "jira": {
                        "base_url": "https://x.atlassian.net",
                        "email": "a@b.c",
                        "api_token": "x",
                        "webhook_secret": "x",
                    },
                },
            }
        )
    )
    command = [sys.executable, "-m", "threadlink", "--config", str(config), "status"]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_status_shows_a_healthy_deployment_and_then_the_sink_whose_token_was_revoked(
    sandbox: SandboxDeployment, tmp_path: Path
) -> None:
    sandbox.loop.run(sandbox.jira.put_issue("STA-1", "Checkout fails"))
    channel = "C" + secrets.token_hex(4).upper()
    ts = sandbox.post(channel, "STA-1?")
    wait_for(lambda: sandbox.cards(channel, ts), timeout_s=120, what="the card")

    healthy = wait_for(
        lambda: (r := status(sandbox, tmp_path)).returncode == 0 and r, timeout_s=90, what="a healthy status"
    )
    rows = {tuple(row.split()[:2]): row.split() for row in healthy.stdout.splitlines()[1:]}
    namespace = sandbox.settings.kafka.namespace
    assert rows[("process", "connectors")][2] == "ok" and rows[("process", "streams")][2] == "ok"
    assert rows[("sink", f"{namespace}.sink.slack")][2:4] == ["up", "1"]  # up, 1 member(s)
    assert rows[("dead", "letters")][3] == "empty"
    connectors_ready = f"http://127.0.0.1:{sandbox.settings.http.port}/readyz"
    streams_ready = f"http://127.0.0.1:{sandbox.settings.streams.web_port}/readyz"
    assert httpx.get(connectors_ready, timeout=10).status_code == 200
    assert httpx.get(streams_ready, timeout=10).json()["status"] == "ready"

    sandbox.slack.bot_token = "xoxb-revoked-" + secrets.token_hex(4)
    sandbox.post("C" + secrets.token_hex(4).upper(), "STA-1 again?")
    degraded = wait_for(
        lambda: (r := status(sandbox, tmp_path)).returncode == 1 and r, timeout_s=90, what="a degraded status"
    )
    [connectors] = [row for row in degraded.stdout.splitlines() if row.split()[:2] == ["process", "connectors"]]
    assert connectors.split()[2] == "degraded" and "sink:slack" in connectors, degraded.stdout
    # Live, but not ready: a rollout waits, a liveness probe does not restart it for a credential.
    not_ready = httpx.get(connectors_ready, timeout=10)
    assert not_ready.status_code == 503 and "sink:slack" in not_ready.json()["problems"]
    assert httpx.get(f"http://127.0.0.1:{sandbox.settings.http.port}/healthz", timeout=10).status_code == 200
