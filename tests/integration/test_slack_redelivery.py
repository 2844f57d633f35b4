"""Slack's redeliveries are published once across a restart of the connector (and by another
replica): a restarted source reads back what was published lately from the real broker."""

from __future__ import annotations

import functools
import json
import time
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer

from connectors.base import ConnectorContext
from connectors.runtime.kafka import KafkaPublisher
from connectors.runtime.recent import published_ids
from connectors.runtime.webhooks import DeadLetters, build_app
from connectors.slack.config import SlackConfig
from connectors.slack.mapping import SlackIdentity
from connectors.slack.source import SlackEventsSource, signed_headers
from schemas.social import SocialEvent
from tests.integration.kafka_helpers import envelopes
from threadlink.config import Settings
from threadlink.topics_admin import apply_topics

pytestmark = pytest.mark.integration

SECRET = "redelivery-test-signing-secret"


def event(event_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "event_callback",
        "team_id": "T1",
        "api_app_id": "A1",
        "event_id": event_id,
        "event_time": int(time.time()),
        "event": {"channel": "C0REDELIV1", "user": "U0ALICE", "channel_type": "channel", **fields},
    }


class Replica:
    """One connectors process's Events API endpoint on the real broker."""

    def __init__(self, bootstrap: str, settings: Settings, publisher: KafkaPublisher, **config: Any) -> None:
        ctx = ConnectorContext(
            "slack",
            settings.kafka.topics,
            publisher,
            published_lately=functools.partial(published_ids, bootstrap, client_id="tests-recent"),
        )
        slack = SlackConfig(
            signing_secret=SECRET, bot_token="xoxb-unused", bot_user_id="U0BOT", bot_id="B0BOT", **config
        )
        self.source = SlackEventsSource(slack, ctx, SlackIdentity(bot_user_id="U0BOT", bot_id="B0BOT"))
        self.server = TestServer(
            build_app([("slack", self.source)], dead_letters=DeadLetters(publisher, settings.kafka.topics)),
            host="127.0.0.1",
        )

    async def __aenter__(self) -> Replica:
        await self.source.start()
        await self.server.start_server()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.server.close()

    async def deliver(self, payload: dict[str, Any], retry: int = 0) -> httpx.Response:
        body = json.dumps(payload).encode()
        headers = signed_headers(SECRET, body)
        if retry:
            headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.post(str(self.server.make_url("/webhooks/slack/events")), content=body, headers=headers)


async def test_a_redelivery_after_a_restart_or_to_another_replica_is_published_once(
    kafka_bootstrap: str, namespace: str
) -> None:
    settings = Settings(kafka={"bootstrap_servers": kafka_bootstrap, "namespace": f"{namespace}-redeliver"})
    apply_topics(settings)
    topic = settings.kafka.topics.social_events
    publisher = KafkaPublisher(kafka_bootstrap, client_id="tests")
    now = time.time()
    first = event("Ev0RESTART1", type="message", text="SHOP-1?", ts=f"{now:.6f}")
    second = event(
        "Ev0RESTART2",
        type="reaction_added",
        reaction="eyes",
        item={"type": "message", "channel": "C0REDELIV1", "ts": f"{now:.6f}"},
    )
    try:
        async with Replica(kafka_bootstrap, settings, publisher) as before:
            assert (await before.deliver(first)).status_code == 200
            assert (await before.deliver(second)).status_code == 200
        # The process is gone (its memory with it); Slack redelivers to the restarted one and to
        # a second replica, and sends one new event.
        async with (
            Replica(kafka_bootstrap, settings, publisher) as restarted,
            Replica(kafka_bootstrap, settings, publisher) as other,
        ):
            assert (await restarted.deliver(first, retry=1)).status_code == 200
            assert (await other.deliver(second, retry=2)).status_code == 200
            new = event("Ev0RESTART3", type="message", text="and SHOP-2", ts=f"{now + 1:.6f}")
            assert (await other.deliver(new)).status_code == 200
        # Every answer came after the broker's ack (or the decision that it was a copy): what is
        # on the topic now is all there will be.
        landed = [e.id for e in envelopes(kafka_bootstrap, topic, SocialEvent)]
        assert sorted(landed) == ["slack:Ev0RESTART1", "slack:Ev0RESTART2", "slack:Ev0RESTART3"]
    finally:
        publisher.close()


async def test_with_no_window_only_the_process_s_own_memory_counts(kafka_bootstrap: str, namespace: str) -> None:
    settings = Settings(kafka={"bootstrap_servers": kafka_bootstrap, "namespace": f"{namespace}-nowindow"})
    apply_topics(settings)
    publisher = KafkaPublisher(kafka_bootstrap, client_id="tests")
    now = time.time()
    payload = event("Ev0NOWINDOW", type="message", text="SHOP-1?", ts=f"{now:.6f}")
    try:
        async with Replica(kafka_bootstrap, settings, publisher, redelivery_window_s=0) as before:
            await before.deliver(payload)
        async with Replica(kafka_bootstrap, settings, publisher, redelivery_window_s=0) as restarted:
            await restarted.deliver(payload, retry=1)
        landed = envelopes(kafka_bootstrap, settings.kafka.topics.social_events, SocialEvent)
        assert [e.id for e in landed] == ["slack:Ev0NOWINDOW", "slack:Ev0NOWINDOW"]
    finally:
        publisher.close()
