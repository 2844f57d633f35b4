"""The alert rules on a real Prometheus (Debian's package) scraping the real `threadlink connectors
run` and `threadlink streams run` on the real broker: both targets are up and nothing fires;
then Slack revokes the sink's token, a mention's card is refused, and ThreadlinkSinkAuthRefused
goes pending and then firing, as Prometheus' HTTP API tells. The rules are deploy/'s own, with
their `for:` durations cut to seconds so the test does not wait five minutes."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.demo import free_port
from tests.integration.kafka_helpers import wait_for
from tests.integration.sandbox_deployment import SandboxDeployment, start_sandbox, stop_sandbox

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules" / "threadlink.rules.yml"
ALERT = "ThreadlinkSinkAuthRefused"


@pytest.fixture(scope="module")
def sandbox(
    kafka_bootstrap: str, namespace: str, tmp_path_factory: pytest.TempPathFactory, vendor_specs: str
) -> Iterator[SandboxDeployment]:
    deployment = start_sandbox(kafka_bootstrap, f"{namespace}-alerts", tmp_path_factory.mktemp("deployment"))
    yield deployment
    stop_sandbox(deployment)


@pytest.fixture(scope="module")
def prometheus(sandbox: SandboxDeployment, promtool: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prometheus of this test's own on 127.0.0.1, evaluating deploy/'s rules every second."""
    binary = shutil.which("prometheus") or str(Path(promtool).with_name("prometheus"))
    if not Path(binary).exists():
        pytest.fail("Debian's prometheus package gave promtool but no prometheus binary")
    work = tmp_path_factory.mktemp("prometheus")
    (work / "rules.yml").write_text(re.sub(r"(?m)^(\s+for: )\S+$", r"\g<1>3s", RULES.read_text()))
    targets = {
        "threadlink-connectors": sandbox.settings.http.port,
        "threadlink-streams": sandbox.settings.streams.web_port,
    }
    jobs = "".join(
        f"  - job_name: {job}\n"
        f"    static_configs:\n"
        f"      - targets: ['127.0.0.1:{port}']\n"
        f"        labels: {{environment: test}}\n"
        for job, port in targets.items()
    )
    config = work / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{work / 'rules.yml'}']\n"
        f"scrape_configs:\n{jobs}"
    )
    checked = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    port = free_port(19290)
    log = (work / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(url), timeout_s=60, what="Prometheus to be ready")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def api(url: str, path: str) -> Any:
    response = httpx.get(f"{url}/api/v1/{path}", timeout=5)
    response.raise_for_status()
    return response.json()["data"]


def states_of(url: str, alert: str) -> set[str]:
    return {a["state"] for a in api(url, "alerts")["alerts"] if a["labels"]["alertname"] == alert}


def test_a_revoked_sink_token_makes_its_alert_pending_then_firing(sandbox: SandboxDeployment, prometheus: str) -> None:
    def both_up() -> bool:
        active = api(prometheus, "targets")["activeTargets"]
        return len(active) == 2 and all(t["health"] == "up" for t in active)

    wait_for(both_up, timeout_s=60, what="both threadlink processes scraped")
    sandbox.loop.run(sandbox.jira.put_issue("ALR-1", "Checkout fails", status="In Progress"))
    channel = "C" + secrets.token_hex(4).upper()
    ts = sandbox.post(channel, "Is ALR-1 the checkout problem?")
    wait_for(lambda: sandbox.cards(channel, ts), timeout_s=120, what="a card while the token works")
    wait_for(
        lambda: api(prometheus, "query?query=threadlink_sink_up")["result"], timeout_s=30, what="threadlink_sink_up"
    )
    assert not states_of(prometheus, ALERT), "nothing is refused yet"

    sandbox.slack.bot_token = "xoxb-revoked-" + secrets.token_hex(4)  # Slack answers invalid_auth from now on
    refused = "C" + secrets.token_hex(4).upper()
    sandbox.post(refused, "And ALR-1 here?")
    seen: list[str] = []

    def fired() -> bool:
        states = states_of(prometheus, ALERT)
        seen.extend(sorted(states - set(seen[-1:])))
        return "firing" in states

    wait_for(fired, timeout_s=120, interval_s=0.2, what=f"{ALERT} firing")
    assert "pending" in seen and seen.index("pending") < seen.index("firing"), seen
    [alert] = [a for a in api(prometheus, "alerts")["alerts"] if a["labels"]["alertname"] == ALERT]
    assert alert["labels"]["connector"] == "slack" and alert["labels"]["environment"] == "test"
    assert "credential is refused" in alert["annotations"]["summary"]
