"""`promtool check metrics` on a live scrape of each process: the real `threadlink connectors run`
and `threadlink streams run` on the real broker, after one signed Slack webhook has gone through
to a card, so the families that only appear once labelled (webhook outcomes, published events,
sink commands, latency histograms, links) are in the scrape too."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy.metric_names import defined_metrics
from tests.integration.kafka_helpers import wait_for
from tests.integration.sandbox_deployment import SandboxDeployment, start_sandbox, stop_sandbox

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture(scope="module")
def sandbox(
    kafka_bootstrap: str, namespace: str, tmp_path_factory: pytest.TempPathFactory, vendor_specs: str
) -> Iterator[SandboxDeployment]:
    deployment = start_sandbox(kafka_bootstrap, f"{namespace}-metrics", tmp_path_factory.mktemp("deployment"))
    yield deployment
    stop_sandbox(deployment)
    deployment.slack.assert_no_violations()
    deployment.jira.assert_no_violations()


@pytest.fixture(scope="module")
def scrapes(sandbox: SandboxDeployment) -> dict[str, str]:
    """Both processes' /metrics once a mention of a ticket has become a card."""
    sandbox.loop.run(sandbox.jira.put_issue("OPS-42", "Checkout fails", status="In Progress", assignee="Ada"))
    channel = "C" + secrets.token_hex(4).upper()
    ts = sandbox.post(channel, "Is OPS-42 fixed yet?")
    wait_for(lambda: sandbox.cards(channel, ts), timeout_s=120, what="the OPS-42 card")
    urls = {
        "connectors": f"http://127.0.0.1:{sandbox.settings.http.port}/metrics",
        "streams": f"http://127.0.0.1:{sandbox.settings.streams.web_port}/metrics",
    }

    def scrape(url: str) -> str:
        response = httpx.get(url, timeout=10)
        response.raise_for_status()
        return response.text

    # The worker counts the link once the card's outcome came back; wait for both sides' figures.
    wait_for(lambda: "threadlink_end_to_end_latency_seconds_bucket{" in scrape(urls["connectors"]), what="latency")
    wait_for(lambda: 'threadlink_stream_links_total{outcome="carded"}' in scrape(urls["streams"]), what="links")
    return {name: scrape(url) for name, url in urls.items()}


@pytest.mark.parametrize("process", ["connectors", "streams"])
def test_promtool_check_metrics_is_clean_on_a_live_scrape(scrapes: dict[str, str], process: str, promtool: str) -> None:
    text = scrapes[process]
    assert "# TYPE threadlink_" in text
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        f"promtool check metrics on the {process} process:\n{result.stdout}{result.stderr}"
    )


def test_live_scrapes_expose_the_metrics_deploy_names(scrapes: dict[str, str]) -> None:
    """What the dashboard and the alert rules were checked against (the code's definitions) is
    what the processes serve."""
    served = {
        line.split("{")[0].split(" ")[0]
        for text in scrapes.values()
        for line in text.splitlines()
        if line.startswith("threadlink_")
    }
    for name in (
        "threadlink_connector_webhook_requests_total",
        "threadlink_connector_events_published_total",
        "threadlink_sink_commands_total",
        "threadlink_connector_api_requests_total",
        "threadlink_end_to_end_latency_seconds_bucket",
        "threadlink_sink_up",
        "threadlink_stream_links_total",
        "threadlink_stream_events_total",
    ):
        assert name in served, f"{name} is not in a live scrape"
    assert served <= defined_metrics(), (
        f"served but not known to the deploy checks: {sorted(served - defined_metrics())}"
    )


@pytest.mark.parametrize("process", ["connectors", "streams"])
def test_the_images_healthcheck_passes_on_each_live_process(sandbox: SandboxDeployment, process: str) -> None:
    """The Dockerfile's HEALTHCHECK command, run as it is against each running process."""
    import json
    import os
    import sys

    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(path=str(Path(__file__).resolve().parents[2] / "deploy" / "docker" / "Dockerfile"))
    (check,) = [i["value"] for i in parser.structure if i["instruction"] == "HEALTHCHECK"]
    command = json.loads(check.split("CMD", 1)[1])
    assert command[0] == "python"
    port = sandbox.settings.http.port if process == "connectors" else sandbox.settings.streams.web_port
    env = {**os.environ, "THREADLINK_HEALTH_PORT": str(port)}
    result = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    # And it fails when nothing answers there.
    env["THREADLINK_HEALTH_PORT"] = "1"
    assert subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=30).returncode != 0
