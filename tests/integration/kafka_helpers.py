"""Reading topics in tests, on the real broker, and brokers of a test module's own."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.partitioner.default import murmur2
from pydantic import TypeAdapter

from connectors.runtime.kafka import read_to_end
from connectors.runtime.pollers import PollerGroup
from connectors.runtime.sinks import SinkRunner
from schemas.envelope import Envelope


def envelopes(bootstrap: str, topic: str, model: Any) -> list[Any]:
    adapter = TypeAdapter(Envelope[model])
    return [adapter.validate_json(r.value) for r in read_to_end(bootstrap, topic, client_id="threadlink-tests")]


def wait_for(predicate: Any, timeout_s: float = 60, interval_s: float = 0.25, what: str = "condition") -> Any:
    """Poll until `predicate()` is truthy; generous timeouts keep a noisy 2-core CI reliable."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


class TopicTail:
    """Reads a topic from the beginning and then on, keeping its place between calls (a test that
    checks a growing topic again and again reads each record once)."""

    def __init__(self, bootstrap: str, topic: str, model: Any) -> None:
        self.adapter = TypeAdapter(Envelope[model])
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap.split(","), client_id="threadlink-tests", enable_auto_commit=False
        )
        partitions = self.consumer.partitions_for_topic(topic) or set()
        self.partitions = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(self.partitions)
        self.consumer.seek_to_beginning(*self.partitions)
        self.seen: list[Any] = []

    def read(self) -> list[Any]:
        """Everything up to the end offsets as of now, appended to `seen`; returns `seen`."""
        end = self.consumer.end_offsets(self.partitions)
        while any(self.consumer.position(tp) < end[tp] for tp in self.partitions):
            for batch in self.consumer.poll(timeout_ms=500).values():
                self.seen.extend(self.adapter.validate_json(r.value) for r in batch)
        return self.seen

    def close(self) -> None:
        self.consumer.close()


def produce(bootstrap: str, topic: str, events: Iterable[tuple[str, Envelope[Any]]]) -> int:
    """Send many envelopes and wait for all of them (acks=all), fast: one flush, not one wait each."""
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", linger_ms=20, batch_size=256 * 1024)
    try:
        futures = [
            producer.send(topic, key=key.encode(), value=envelope.to_bytes(), headers=envelope.kafka_headers())
            for key, envelope in events
        ]
        producer.flush(timeout=120)
        for future in futures:
            future.get(timeout=60)
        return len(futures)
    finally:
        producer.close(timeout=10)


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as kafka-python and aiokafka use) picks."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def key_on_partition_of(key: str, partitions: int, make: Any) -> str:
    """`make(n)` for the first n whose key lands on the same partition as `key`: a sentinel that
    travels behind `key`'s events, so its arrival means theirs are done."""
    target = partition_of(key, partitions)
    return next(candidate for n in range(1, 10_000) if partition_of(candidate := make(n), partitions) == target)


def own_kafka(layout: str, what: str, base_dir: Any = None) -> Iterator[Any]:
    """A broker layout of deploy/kafka/local_kafka.py started for one test module and wiped
    after it (never the shared broker): the body of a module-scoped fixture."""
    from threadlink.devkafka import local_kafka

    module = local_kafka()
    kafka = module.LocalKafka(layout, base_dir) if base_dir is not None else module.LocalKafka(layout)
    try:
        kafka.up(quiet=True)
    except module.LocalKafkaError as exc:
        pytest.fail(f"could not start {what}: {exc}")
    yield kafka
    kafka.wipe()


async def run_until(runner: SinkRunner, done: Any, timeout_s: float = 60) -> None:
    """Run a sink runner until `done()` holds (at most `timeout_s`), then stop it."""
    await runner.start()
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(timeout_s):
            while not done():
                await asyncio.sleep(0.1)
    finally:
        runner.stop()
        with contextlib.suppress(Exception):
            await task


async def until(predicate: Any, timeout_s: float = 90, *, blocking: bool = False) -> None:
    """Until `predicate()` holds; a `blocking` one (it reads Kafka) runs in a thread, off the loop."""
    async with asyncio.timeout(timeout_s):
        while not (await asyncio.to_thread(predicate) if blocking else predicate()):
            await asyncio.sleep(0.2)


async def poll_for_a_while(kafka_bootstrap: str, topics: Any, name: str, poller: Any, done: Any) -> int:
    """Runs the poller in a PollerGroup until `done()`, then 3 more intervals; returns its polls."""
    polls = 0
    original = poller.poll

    async def counted(cursor: Any) -> Any:
        nonlocal polls
        polls += 1
        return await original(cursor)

    poller.poll = counted  # type: ignore[method-assign]
    group = PollerGroup(kafka_bootstrap, topics, [(name, poller)])
    await group.start()
    task = asyncio.create_task(group.run())
    try:
        await until(done, blocking=True)
        settled = polls
        await until(lambda: polls >= settled + 3, timeout_s=30)
    finally:
        group.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 60)
    return polls
