"""The worker's producer, on the real broker: an output to a topic the producer knows only from
an all-topics metadata answer (Faust asks for one after creating each of its topics) is
acknowledged at once, also when a send to a topic it did not know makes it ask about fewer
topics (fix 4 of streams/faust_fixes.py; without it the output waited for another send to its
topic, or 20 minutes)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaProducer
from kafka.admin import KafkaAdminClient

from streams import faust_fixes

pytestmark = pytest.mark.integration


@pytest.fixture
def admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap.split(","), client_id="threadlink-tests")
    created: list[str] = []
    client.created = created  # type: ignore[attr-defined]
    yield client
    if created:
        client.delete_topics(created)
    client.close()


def create(admin: KafkaAdminClient, name: str) -> None:
    admin.create_topics({name: {"num_partitions": 1, "replication_factor": 1}})
    admin.wait_for_topics([name], timeout_ms=60_000)
    admin.created.append(name)  # type: ignore[attr-defined]


async def test_an_output_to_a_topic_known_from_an_all_topics_answer_is_not_stranded(
    kafka_bootstrap: str, namespace: str, admin: KafkaAdminClient
) -> None:
    faust_fixes.install()
    known, new = f"{namespace}.metadata.known", f"{namespace}.metadata.new"
    create(admin, known)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        await producer.client.force_metadata_update()  # as Faust does after creating a topic
        assert known in producer.client.cluster.topics()
        create(admin, new)  # created after that answer, like a changelog the broker listed late

        to_known = await producer.send(known, b"an output")
        to_new = await producer.send(new, b"the first changelog write")
        await asyncio.wait_for(to_new, 30)
        await asyncio.wait_for(to_known, 10)
    finally:
        await producer.stop()
