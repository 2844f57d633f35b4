"""The connectors' publisher on a broker of its own that is killed while batches are in flight
and stays away longer than the producer's delivery timeout: once the broker is back, the
publisher publishes again (connectors/runtime/kafka_fixes.py; without it, kafka-python's
idempotent producer never asked for a new producer id, and every later send expired)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from connectors.runtime.kafka import KafkaPublisher, PublishError
from tests.integration.kafka_helpers import own_kafka
from threadlink.devkafka import local_kafka

pytestmark = pytest.mark.integration

DELIVERY_TIMEOUT_MS = 4_000
TOPIC = "outage"


@pytest.fixture(scope="module")
def spare_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from own_kafka("spare", "the spare Kafka broker", tmp_path_factory.mktemp("outage-kafka"))


async def test_a_publisher_whose_broker_was_away_longer_than_its_delivery_timeout_publishes_again(
    spare_kafka: Any,
) -> None:
    servers = local_kafka().bootstrap_servers("spare")
    admin = KafkaAdminClient(bootstrap_servers=servers.split(","), client_id="tests")
    with contextlib.suppress(Exception):
        admin.create_topics([NewTopic(TOPIC, 3, 1)])
    admin.close()
    publisher = KafkaPublisher(
        servers, client_id="tests", delivery_timeout_ms=DELIVERY_TIMEOUT_MS, request_timeout_ms=2_000
    )
    try:
        await publisher.publish_raw(TOPIC, "first", b"before", [])
        sends: list[asyncio.Task[None]] = []
        for n in range(400):  # a steady stream, with requests in flight when the broker dies
            sends.append(asyncio.create_task(publisher.publish_raw(TOPIC, f"k{n}", b"x" * 100, [])))
            if n == 200:
                spare_kafka.kill_node(1)
            await asyncio.sleep(0.005)
        outcomes = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 60)
        refused = [o for o in outcomes if isinstance(o, PublishError)]
        assert refused, "the sends after the kill expired while the broker was away"
        await asyncio.sleep(DELIVERY_TIMEOUT_MS / 1000)  # and the batches in flight expired too

        spare_kafka.up(quiet=True)
        async with asyncio.timeout(120):
            while True:
                try:
                    await publisher.publish_raw(TOPIC, "after", b"back", [])
                    break
                except PublishError:
                    await asyncio.sleep(0.5)
        manager = publisher.producer._transaction_manager
        assert manager is not None and manager.has_producer_id()
    finally:
        await asyncio.to_thread(publisher.close, 5)
