"""Shared doubles for the Slack connector's tests: a recording Publisher, signed requests,
a config, and a FakeSlack on 127.0.0.1 (port 0)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from connectors.base import ConnectorContext, WebhookRequest
from connectors.slack.config import SlackConfig
from connectors.slack.source import signed_headers
from sandbox.contracts import SpecsMissing, spec_file
from sandbox.contracts.slack import EVENT_WRAPPER_SPEC, EVENTS_API_SPEC, WEB_API_SPEC
from sandbox.slack_api import FakeSlack
from schemas.topics import TopicNames
from tests.unit.connectors.recording import RecordingPublisher

SIGNING_SECRET = "signing-secret-for-tests-only"
BOT_TOKEN = "xoxb-test-token-not-a-real-one"
TEAM_ID = "T0001"
BOT_USER_ID = "U0THREADLNK"
BOT_ID = "B0THREADLNK"
APP_ID = "A0THREADLNK"
CHANNEL = "C0GENERAL1"


def event_payload(
    event: dict[str, Any], *, event_id: str = "Ev0001", event_time: int = 1_700_000_000
) -> dict[str, Any]:
    """An `event_callback` as Slack sends it."""
    return {
        "token": "verification-token",
        "team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "event": {"event_ts": event.get("ts", "1700000000.000100"), **event},
        "type": "event_callback",
        "event_id": event_id,
        "event_time": event_time,
        "authed_users": [BOT_USER_ID],
    }


def signed_request(
    body: dict[str, Any] | bytes,
    *,
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
    headers: dict[str, str] | None = None,
) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return WebhookRequest(headers={**signed_headers(secret, raw, timestamp=timestamp), **(headers or {})}, body=raw)


def make_config(**overrides: Any) -> SlackConfig:
    values: dict[str, Any] = {"signing_secret": SIGNING_SECRET, "bot_token": BOT_TOKEN}
    values.update(overrides)
    return SlackConfig.model_validate(values)


@pytest.fixture
def topics() -> TopicNames:
    return TopicNames(namespace="test")


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def ctx(topics: TopicNames, publisher: RecordingPublisher) -> ConnectorContext:
    return ConnectorContext(name="slack", topics=topics, publisher=publisher)


@pytest.fixture(scope="session")
def slack_specs() -> None:
    """The Slack specs the fake checks against; a clear failure (never a silent pass) without them."""
    try:
        for relative in (WEB_API_SPEC, EVENT_WRAPPER_SPEC, EVENTS_API_SPEC):
            spec_file(relative)
    except SpecsMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
async def start_fake_slack(slack_specs: None) -> AsyncIterator[Callable[..., Awaitable[FakeSlack]]]:
    """`await start_fake_slack(**overrides)`: a started FakeSlack with the test credentials
    (no delay between event retries), stopped after the test."""
    started: list[FakeSlack] = []

    async def start(**overrides: Any) -> FakeSlack:
        values: dict[str, Any] = {
            "signing_secret": SIGNING_SECRET,
            "bot_token": BOT_TOKEN,
            "team_id": TEAM_ID,
            "bot_user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "retry_delays_s": (0.0, 0.0, 0.0),
        }
        values.update(overrides)
        fake = FakeSlack(**values)
        started.append(fake)
        await fake.start()
        return fake

    yield start
    for fake in started:
        await fake.stop()


@pytest.fixture
async def fake_slack(start_fake_slack: Callable[..., Awaitable[FakeSlack]]) -> FakeSlack:
    return await start_fake_slack()
