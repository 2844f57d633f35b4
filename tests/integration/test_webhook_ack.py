"""A webhook is answered 2xx only after the broker acknowledged its event: when Kafka cannot
take it, the platform gets a 503 and redelivers, and the redelivery lands exactly once."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from aiohttp.test_utils import TestServer

from connectors.base import ConnectorContext
from connectors.runtime.kafka import KafkaPublisher
from connectors.runtime.webhooks import DeadLetters, build_app
from connectors.slack.config import SlackConfig
from connectors.slack.mapping import SlackIdentity
from connectors.slack.source import SlackEventsSource, signed_headers
from schemas.social import SocialEvent
from tests.integration.kafka_helpers import envelopes
from threadlink.config import Settings
from threadlink.topics_admin import apply_topics

pytestmark = pytest.mark.integration

SECRET = "ack-test-signing-secret"


async def test_no_2xx_before_the_broker_has_the_event(kafka_bootstrap: str, namespace: str) -> None:
    settings = Settings(kafka={"bootstrap_servers": kafka_bootstrap, "namespace": f"{namespace}-ack"})
    topics = settings.kafka.topics
    publisher = KafkaPublisher(kafka_bootstrap, client_id="tests")
    config = SlackConfig(
        signing_secret=SECRET,
        bot_token="xoxb-unused",
        bot_user_id="U0BOT",
        bot_id="B0BOT",
        workspace_url="https://acme.slack.com/",
    )
    identity = SlackIdentity(bot_user_id="U0BOT", bot_id="B0BOT", workspace_url="https://acme.slack.com/")
    source = SlackEventsSource(config, ConnectorContext("slack", topics, publisher), identity)
    server = TestServer(build_app([("slack", source)], dead_letters=DeadLetters(publisher, topics)), host="127.0.0.1")
    await server.start_server()
    payload = {
        "type": "event_callback",
        "team_id": "T1",
        "api_app_id": "A1",
        "event_id": "Ev0ACK00001",
        "event_time": int(time.time()),
        "event": {
            "type": "message",
            "channel": "C0ACK0001",
            "user": "U0ALICE",
            "text": "SHOP-1?",
            "ts": f"{time.time():.6f}",
            "channel_type": "channel",
        },
    }
    body = json.dumps(payload).encode()
    url = str(server.make_url("/webhooks/slack/events"))
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            # The topic does not exist yet (the broker does not create topics on its own).
            first = await client.post(url, content=body, headers=signed_headers(SECRET, body))
            assert first.status_code == 503
            assert first.headers["Retry-After"]
            apply_topics(settings)
            retry_headers = signed_headers(SECRET, body) | {
                "X-Slack-Retry-Num": "1",
                "X-Slack-Retry-Reason": "http_error",
            }
            second = await client.post(url, content=body, headers=retry_headers)
            assert second.status_code == 200
            third = await client.post(url, content=body, headers=retry_headers | {"X-Slack-Retry-Num": "2"})
            assert third.status_code == 200
        landed = envelopes(kafka_bootstrap, topics.social_events, SocialEvent)
        assert [e.id for e in landed] == ["slack:Ev0ACK00001"]
    finally:
        await server.close()
        publisher.close()
