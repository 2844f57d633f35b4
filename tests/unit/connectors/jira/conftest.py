"""Shared doubles for the Jira connector's tests: a recording Publisher, a config, a FakeJira."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from connectors.base import ConnectorContext
from connectors.jira.config import JiraConfig
from sandbox.contracts import SpecsMissing
from sandbox.contracts.jira import JiraContract, jira_contract
from sandbox.jira_api import FakeJira
from schemas.topics import TopicNames
from tests.unit.connectors.recording import RecordingPublisher

EMAIL = "bot@example.com"
API_TOKEN = "api-token-not-a-real-one"
WEBHOOK_SECRET = "webhook-secret-for-tests"


@pytest.fixture
def topics() -> TopicNames:
    return TopicNames(namespace="test")


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def ctx(topics: TopicNames, publisher: RecordingPublisher) -> ConnectorContext:
    return ConnectorContext(name="jira", topics=topics, publisher=publisher)


def _make_config(base_url: str = "https://acme.atlassian.net", **overrides: Any) -> JiraConfig:
    values: dict[str, Any] = {
        "base_url": base_url,
        "email": EMAIL,
        "api_token": API_TOKEN,
        "webhook_secret": WEBHOOK_SECRET,
        "project_visibility": {"OPS": "restricted", "WEB": "public"},
    }
    values.update(overrides)
    return JiraConfig.model_validate(values)


@pytest.fixture
def make_config() -> Callable[..., JiraConfig]:
    """`make_config(base_url, **overrides)`: a valid config with the test credentials."""
    return _make_config


@pytest.fixture
def config() -> JiraConfig:
    return _make_config()


@pytest.fixture(scope="session")
def contract() -> JiraContract:
    try:
        return jira_contract()
    except SpecsMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
async def fake_jira(contract: JiraContract) -> AsyncIterator[FakeJira]:
    jira = FakeJira(email=EMAIL, api_token=API_TOKEN, webhook_secret=WEBHOOK_SECRET, contract=contract)
    await jira.start()
    try:
        yield jira
    finally:
        await jira.stop()
