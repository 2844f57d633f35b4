"""GitHub Issues in the whole deployment, as a user sees it: a Slack thread that names a GitHub
issue (by URL or as owner/repo#n) gets the issue's card, the issue gets a back-link comment, and
closing the issue on GitHub (its signed webhook) updates the card in place. Real broker, real
`threadlink connectors run` and `streams run` processes; Slack and GitHub are the stand-ins,
which check every request against the vendors' published descriptions."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.contracts import SpecsMissing
from sandbox.contracts.github import github_contract
from sandbox.github_api import FakeGitHub
from tests.integration.kafka_helpers import wait_for
from tests.integration.sandbox_deployment import LoopThread, SandboxDeployment, start_sandbox, stop_sandbox
from threadlink.config import MentionPattern, Settings

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

TOKEN = "github_pat_e2e_not_real_0123456789"
SECRET = "github-e2e-webhook-secret"
OWNER, REPO = r"(?P<owner>[A-Za-z0-9][A-Za-z0-9-]{0,38})", r"(?P<repo>[A-Za-z0-9._-]{1,100})"
NUMBER = r"(?P<number>[1-9][0-9]{0,9})"
KEY = "{owner}/{repo}#{number}"


@pytest.fixture(scope="module")
def deployment(
    kafka_bootstrap: str, namespace: str, tmp_path_factory: pytest.TempPathFactory, vendor_specs: str
) -> Iterator[tuple[SandboxDeployment, FakeGitHub]]:
    try:
        contract = github_contract()
    except SpecsMissing as exc:
        pytest.skip(f"GitHub's OpenAPI description is needed to check the traffic: {exc}")
    loop = LoopThread()
    github = FakeGitHub(token=TOKEN, webhook_secret=SECRET, contract=contract)
    loop.run(github.start())
    github.add_repo("acme/shop", private=True)

    def with_github(settings: Settings) -> Settings:
        github.webhook_url = f"http://127.0.0.1:{settings.http.port}/webhooks/github"
        connectors = {
            **settings.connectors,
            "github": {"api_url": github.url, "token": TOKEN, "webhook_secret": SECRET, "requests_per_s": 50},
        }
        patterns = [
            *settings.streams.mention_patterns,
            MentionPattern(system="github", regex=rf"(?<![\w./-]){OWNER}/{REPO}#{NUMBER}\b", key=KEY, lowercase=True),
            MentionPattern(
                system="github", regex=rf"https://github\.com/{OWNER}/{REPO}/issues/{NUMBER}\b", key=KEY, lowercase=True
            ),
        ]
        streams = settings.streams.model_copy(update={"mention_patterns": patterns})
        return Settings.model_validate(
            {**settings.model_dump(mode="python"), "connectors": connectors, "streams": streams.model_dump()}
        )

    run_dir: Path = tmp_path_factory.mktemp("github-e2e")
    sandbox = start_sandbox(kafka_bootstrap, f"{namespace}-ghe2e", run_dir, customize=with_github, loop=loop)
    try:
        yield sandbox, github
    finally:
        loop.run(github.stop())
        stop_sandbox(sandbox)  # stops the loop too
        github.assert_no_violations()
        sandbox.slack.assert_no_violations()


def test_a_thread_naming_a_github_issue_gets_its_card_a_backlink_and_follows_its_closing(
    deployment: tuple[SandboxDeployment, FakeGitHub],
) -> None:
    sandbox, github = deployment
    github_url = github.webhook_url
    github.webhook_url = None  # the issue exists on GitHub; threadlink has never heard of it
    sandbox.loop.run(github.put_issue("acme/shop", "Refunds are paid twice", assignee="ada", labels=["bug"]))
    github.webhook_url = github_url
    channel = "C" + secrets.token_hex(4).upper()

    ts = sandbox.post(channel, "Same as https://github.com/Acme/Shop/issues/1 and acme/shop#1?", user="U0ALICE")

    cards = wait_for(lambda: sandbox.cards(channel, ts), timeout_s=120, what="the GitHub issue's card")
    assert len(cards) == 1 and "Refunds are paid twice" in cards[0]["text"]
    fetches = [r for r in github.requests if r.method == "GET" and r.path == "/repos/acme/shop/issues/1"]
    assert len(fetches) == 1 and fetches[0].authenticated
    comments = wait_for(lambda: github.comments("acme/shop", 1), timeout_s=120, what="the back-link on the issue")
    permalink = f"https://sandbox.slack.com/archives/{channel}/p{ts.replace('.', '')}"
    assert len(comments) == 1 and permalink in comments[0]["body"]

    # Closed on GitHub: its webhook reaches threadlink, and the card is updated in place (the
    # same message; Follow may add a short reply about the status besides).
    card_ts = cards[0]["ts"]
    assert "closed" not in json.dumps(cards[0]) and "open" in json.dumps(cards[0])
    sandbox.loop.run(github.put_issue("acme/shop", "Refunds are paid twice", number=1, state="closed"))
    assert github.deliveries[-1].status == 200

    def the_card() -> dict[str, object]:
        return next(m for m in sandbox.cards(channel, ts) if m["ts"] == card_ts)

    wait_for(lambda: "closed" in json.dumps(the_card()), timeout_s=120, what="the card updated to closed")
    assert "Refunds are paid twice" in str(the_card()["text"])
