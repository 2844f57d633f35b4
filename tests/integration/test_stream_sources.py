"""Stream sources on the real broker: a fake long-lived client (QoS 1 semantics: what is not
acknowledged is redelivered after a reconnect) that drops its connection mid-stream. Nothing is
lost, acknowledgements go upstream only once Kafka has the event, and produces are batched."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from connectors.base import ConnectionLost, Emit, StreamSource
from connectors.runtime.batching import BatchedPublisher
from connectors.runtime.kafka import KafkaPublisher
from connectors.runtime.streaming import StreamRunner
from schemas import events
from schemas.envelope import Envelope
from schemas.social import Author, SocialMessage, ThreadRef
from schemas.topics import TopicNames
from tests.integration.kafka_helpers import envelopes
from threadlink.config import Settings
from threadlink.topics_admin import apply_topics

pytestmark = pytest.mark.integration

MESSAGES = 3000


@dataclass
class FakeBroker:
    """An upstream broker with persistent sessions: messages 0..N-1; every connection gets what
    is not yet acknowledged, in order; `drop_after` ends a connection after that many messages."""

    total: int
    drop_after: list[int] = field(default_factory=list)
    acked: set[int] = field(default_factory=set)
    acked_before_durable: list[int] = field(default_factory=list)
    connections: int = 0

    async def messages(self) -> AsyncIterator[int]:
        self.connections += 1
        limit = self.drop_after.pop(0) if self.drop_after else None
        sent = 0
        for n in range(self.total):
            if n in self.acked:
                continue
            if limit is not None and sent >= limit:
                raise ConnectionLost("the broker closed the connection")
            sent += 1
            yield n
            if sent % 200 == 0:
                await asyncio.sleep(0)  # a real socket lets the loop breathe


class Telemetry(StreamSource):
    name = "telemetry"
    reconnect_initial_s = 0.05
    reconnect_max_s = 0.2

    def __init__(self, upstream: FakeBroker, topic: str, durable: set[str]) -> None:
        self.upstream, self.topic, self.durable = upstream, topic, durable
        self.connected = False

    async def connect(self) -> None:
        self.connected = True

    async def run(self, emit: Emit) -> None:
        async for n in self.upstream.messages():
            delivery = await emit(self.topic, f"machine-{n % 7}", reading(n))
            # The PUBACK, only once Kafka has it; a failed delivery is never acknowledged: redelivered.
            delivery.add_done_callback(lambda done, n=n: done.exception() or self.upstream.acked.add(n))

    async def disconnect(self) -> None:
        self.connected = False


def reading(n: int) -> Envelope[SocialMessage]:
    thread = ThreadRef(platform="mes", workspace="plant-1", channel="line-3", thread_id=f"machine-{n % 7}")
    data = SocialMessage(thread=thread, message_id=str(n), author=Author(id="sensor"), text=f"temp {n}")
    return Envelope.wrap(data, type=events.SOCIAL_MESSAGE.format(action="posted"), source_system="mes", id=f"mes:{n}")


async def test_nothing_is_lost_across_a_disconnect_and_produces_are_batched(
    kafka_bootstrap: str, namespace: str
) -> None:
    settings = Settings(kafka={"bootstrap_servers": kafka_bootstrap, "namespace": f"{namespace}-stream"})
    apply_topics(settings)
    topics: TopicNames = settings.kafka.topics
    publisher = KafkaPublisher(kafka_bootstrap, client_id="tests")
    upstream = FakeBroker(MESSAGES, drop_after=[1000, 700])  # two drops mid-stream
    source = Telemetry(upstream, topics.social_events, set())
    batched = BatchedPublisher(publisher, connector="mes", linger_s=0.005, batch_size=200, max_in_flight=1000)
    runner = StreamRunner("mes", source, batched)
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(120):
            while len(upstream.acked) < MESSAGES:
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        publisher.close()

    assert upstream.connections >= 3 and runner.connections >= 3
    assert not source.connected  # disconnected on shutdown
    landed = [e.id for e in envelopes(kafka_bootstrap, topics.social_events, SocialMessage)]
    assert set(landed) == {f"mes:{n}" for n in range(MESSAGES)}  # every acknowledged reading is on Kafka
    # Batched: far fewer trips to the producer than events (redeliveries add a few events).
    assert batched.batches_sent * 10 <= len(landed)


async def test_emit_waits_when_the_in_flight_queue_is_full(kafka_bootstrap: str, namespace: str) -> None:
    settings = Settings(kafka={"bootstrap_servers": kafka_bootstrap, "namespace": f"{namespace}-stream-bp"})
    apply_topics(settings)
    topic = settings.kafka.topics.social_events
    publisher = KafkaPublisher(kafka_bootstrap, client_id="tests")
    batched = BatchedPublisher(publisher, connector="mes", linger_s=60, batch_size=10, max_in_flight=10)
    try:
        deliveries = [await batched(topic, "k", reading(n)) for n in range(10)]  # a full batch: sent
        assert batched.in_flight == 10  # no room: the next emit must wait for acknowledgements
        blocked = asyncio.ensure_future(batched(topic, "k", reading(10)))
        await asyncio.gather(*deliveries)  # room again once the broker acknowledged them
        eleventh = await asyncio.wait_for(blocked, 30)
        assert not eleventh.done()  # lingering: one event is no batch yet
        await batched.flush()
        assert eleventh.done() and eleventh.exception() is None
    finally:
        batched.close()
        publisher.close()
