"""Shared doubles for the GitHub connector's tests: a recording Publisher, a config, a FakeGitHub."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from connectors.base import ConnectorContext
from connectors.github.config import GitHubConfig
from sandbox.contracts import SpecsMissing
from sandbox.contracts.github import GitHubContract, github_contract
from sandbox.github_api import FakeGitHub
from schemas.topics import TopicNames
from tests.unit.connectors.recording import RecordingPublisher

TOKEN = "github_pat_not_a_real_token_0123456789"
WEBHOOK_SECRET = "github-webhook-secret-for-tests"


@pytest.fixture
def topics() -> TopicNames:
    return TopicNames(namespace="test")


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def ctx(topics: TopicNames, publisher: RecordingPublisher) -> ConnectorContext:
    return ConnectorContext(name="github", topics=topics, publisher=publisher)


def _make_config(api_url: str = "https://api.github.com", **overrides: Any) -> GitHubConfig:
    values: dict[str, Any] = {
        "api_url": api_url,
        "token": TOKEN,
        "webhook_secret": WEBHOOK_SECRET,
        "bot_login": "threadlink-bot",
    }
    values.update(overrides)
    return GitHubConfig.model_validate(values)


@pytest.fixture
def make_config() -> Callable[..., GitHubConfig]:
    """`make_config(api_url, **overrides)`: a valid config with the test credentials."""
    return _make_config


@pytest.fixture
def config() -> GitHubConfig:
    return _make_config()


@pytest.fixture(scope="session")
def contract() -> GitHubContract:
    try:
        return github_contract()
    except SpecsMissing as exc:
        pytest.skip(f"GitHub's spec is not here ({exc})")


@pytest.fixture
async def fake_github(contract: GitHubContract) -> AsyncIterator[FakeGitHub]:
    github = FakeGitHub(token=TOKEN, webhook_secret=WEBHOOK_SECRET, contract=contract)
    await github.start()
    github.add_repo("acme/shop", private=True)
    github.add_repo("acme/website", private=False)
    try:
        yield github
        github.assert_no_violations()  # every request the connector sent, every answer, every webhook
    finally:
        await github.stop()
