"""One thread, four ticketing systems, as support staff see it: the real broker, the real
`connectors run` and `streams run` processes, the Slack stand-in, and Jira, GitHub and Zendesk
stand-ins (their vendors' wire formats and auth) beside a real Redmine. A message naming one
record of each gets four cards, each looked up in its own system; none of the four was ever
announced by a webhook, so every card comes from the sink's own look-up."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.github_api import FakeGitHub
from sandbox.zendesk_api import FakeZendesk
from tests.integration.kafka_helpers import wait_for
from tests.integration.redmine_server import Redmine
from tests.integration.sandbox_deployment import LoopThread, SandboxDeployment, start_sandbox, stop_sandbox
from threadlink.config import MentionPattern, Settings

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

GITHUB_TOKEN, ZENDESK_EMAIL = "ghp_" + "f" * 36, "threadlink@example.com"


@pytest.fixture(scope="module")
def four(
    kafka_bootstrap: str,
    namespace: str,
    redmine: Redmine,
    tmp_path_factory: pytest.TempPathFactory,
    vendor_specs: str,
) -> Iterator[tuple[SandboxDeployment, FakeGitHub, FakeZendesk, Redmine]]:
    loop = LoopThread()
    github = FakeGitHub(token=GITHUB_TOKEN, webhook_secret=secrets.token_hex(8))
    zendesk_token = secrets.token_hex(12)
    zendesk = FakeZendesk(email=ZENDESK_EMAIL, api_token=zendesk_token, webhook_secret=secrets.token_hex(8))
    loop.run(github.start())
    loop.run(zendesk.start())
    github.add_repo("acme/shop")

    def with_four(settings: Settings) -> Settings:
        connectors = {
            **settings.connectors,
            "github": {"api_url": github.url, "token": GITHUB_TOKEN, "webhook_secret": "unused-here"},
            "zendesk": {
                "base_url": zendesk.url,
                "email": ZENDESK_EMAIL,
                "api_token": zendesk_token,
                "webhook_secret": "unused-here",
            },
            "redmine": {"base_url": redmine.url, "api_key": redmine.api_key, "poll_interval_s": 3600},
        }
        patterns = [
            *settings.streams.mention_patterns,
            MentionPattern(
                system="github",
                regex=r"(?<![\w./-])(?P<owner>acme)/(?P<repo>shop)#(?P<number>[1-9][0-9]{0,9})\b",
                key="{owner}/{repo}#{number}",
                lowercase=True,
            ),
            MentionPattern(system="zendesk", regex=r"(?i)\bzendesk\s?#(?P<key>[1-9][0-9]{0,11})\b"),
            MentionPattern(system="redmine", regex=r"(?i)\bredmine\s?#(?P<key>[1-9][0-9]{0,8})\b"),
        ]
        streams = settings.streams.model_copy(update={"mention_patterns": patterns})
        return Settings.model_validate(
            {**settings.model_dump(mode="python"), "connectors": connectors, "streams": streams.model_dump()}
        )

    run_dir: Path = tmp_path_factory.mktemp("four-systems")
    sandbox = start_sandbox(kafka_bootstrap, f"{namespace}-four", run_dir, customize=with_four, loop=loop)
    try:
        yield sandbox, github, zendesk, redmine
    finally:
        sandbox.children.stop()
        loop.run(github.stop())
        loop.run(zendesk.stop())
        stop_sandbox(sandbox)
    sandbox.slack.assert_no_violations()
    sandbox.jira.assert_no_violations()
    github.assert_no_violations()
    zendesk.assert_no_violations()


def cards(sandbox: SandboxDeployment, channel: str, ts: str) -> list[dict[str, Any]]:
    return [m for m in sandbox.cards(channel, ts) if m.get("blocks")]


def test_a_thread_naming_a_record_of_each_system_gets_four_cards(
    four: tuple[SandboxDeployment, FakeGitHub, FakeZendesk, Redmine],
) -> None:
    sandbox, github, zendesk, redmine = four
    tag = secrets.token_hex(2).upper()
    jira_key = f"FOUR{tag}-1"
    sandbox.jira.webhook_url = None  # known to Jira only: the card needs the sink's look-up
    sandbox.loop.run(sandbox.jira.put_issue(jira_key, f"Checkout fails {tag}", status="In Progress"))
    issue = sandbox.loop.run(github.put_issue("acme/shop", f"Refunds paid twice {tag}", labels=["bug"]))
    ticket = sandbox.loop.run(zendesk.put_ticket(f"Customer cannot log in {tag}"))
    journal = redmine.create_issue(f"Invoices are late {tag}")

    channel = "C" + secrets.token_hex(4).upper()
    text = f"Same root cause? {jira_key}, acme/shop#{issue['number']}, zendesk#{ticket['id']}, redmine#{journal['id']}"
    ts = sandbox.post(channel, text)
    shown = wait_for(
        lambda: len(cards(sandbox, channel, ts)) >= 4 and cards(sandbox, channel, ts), timeout_s=120, what="four cards"
    )
    blocks = [json.dumps(card["blocks"]) for card in shown]
    assert len(shown) == 4
    for title in ("Checkout fails", "Refunds paid twice", "Customer cannot log in", "Invoices are late"):
        assert sum(f"{title} {tag}" in card for card in blocks) == 1, f"{title!r} on exactly one card"
