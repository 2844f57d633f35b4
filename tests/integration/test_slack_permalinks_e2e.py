"""Slack's own permalinks reach the core systems: with `permalinks: api`, a message's link is
asked of Slack (the stand-in answers through an Enterprise Grid domain, where the built link
would be wrong) at intake, and the Jira back-link comment carries that link, through the real
broker and the real processes."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.kafka_helpers import wait_for
from tests.integration.sandbox_deployment import SandboxDeployment, start_sandbox, stop_sandbox
from threadlink.config import ConnectorEntry, Settings

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

GRID = "https://acme-org.enterprise.slack.com"


@pytest.fixture(scope="module")
def sandbox(
    kafka_bootstrap: str, namespace: str, tmp_path_factory: pytest.TempPathFactory, vendor_specs: str
) -> Iterator[SandboxDeployment]:
    def asking_slack(settings: Settings) -> Settings:
        slack = settings.connectors["slack"]
        entry = ConnectorEntry.model_validate({**slack.model_dump(), "permalinks": "api"})
        return settings.model_copy(update={"connectors": {**settings.connectors, "slack": entry}})

    run_dir: Path = tmp_path_factory.mktemp("slack-permalinks")
    deployment = start_sandbox(kafka_bootstrap, f"{namespace}-slperma", run_dir, customize=asking_slack)
    deployment.slack.permalink_base = GRID
    yield deployment
    stop_sandbox(deployment)
    deployment.slack.assert_no_violations()
    deployment.jira.assert_no_violations()


def test_the_jira_back_link_is_slacks_own_permalink(sandbox: SandboxDeployment) -> None:
    channel = "C" + secrets.token_hex(4).upper()
    key = f"PERMA-{secrets.randbelow(9000) + 1000}"
    sandbox.loop.run(sandbox.jira.put_issue(key, "Checkout fails", status="In Progress", assignee="Ada Lovelace"))
    ts = sandbox.post(channel, f"Is the checkout outage {key}?", user="U0ALICE")
    comments = wait_for(lambda: sandbox.jira.comments(key), timeout_s=120, what=f"the back-link comment on {key}")
    body = json.dumps(comments[0]["body"])
    assert f"{GRID}/archives/{channel}/p{ts.replace('.', '')}" in body
    assert "sandbox.slack.com" not in body  # not the link built from the workspace URL
    asked = [c.params for c in sandbox.slack.calls("chat.getPermalink")]
    assert {"channel": channel, "message_ts": ts} in asked
