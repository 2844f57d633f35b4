"""The bench's own Kafka plumbing: topics of a run, producing a workload fast, watching end
offsets, reading outputs back.

Loads are produced with aiokafka (Faust's client, ~15x faster than kafka-python from one
Python process here), so the load generator is never what a figure measures. Outputs are
read after a run, on topics with `message.timestamp.type=LogAppendTime`: every output carries
the broker's time of arrival, and no consumer competes with the worker for the 2 cores while
it is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka import TopicPartition as SyncTopicPartition
from kafka.admin import KafkaAdminClient, OffsetSpec
from kafka.partitioner.default import murmur2

from bench.budget import Deadline, StepTimeout

LOG_APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}


@dataclass(frozen=True)
class Output:
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes


@dataclass(frozen=True)
class Produced:
    count: int
    seconds: float
    positions: list[tuple[int, int]]
    """(partition, offset) of each record, in the order given."""


class Admin:
    """One admin connection for a run: creates topics, watches end offsets, deletes by prefix."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._client = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="threadlink-bench")
        self._partitions: dict[str, list[int]] = {}

    def close(self) -> None:
        self._client.close()

    def create_topics(self, topics: dict[str, tuple[int, dict[str, str]]], timeout_s: float = 60) -> None:
        """name -> (partitions, configs); waits until every partition has a leader."""
        self._client.create_topics(
            {
                name: {"num_partitions": partitions, "replication_factor": 1, "configs": configs}
                for name, (partitions, configs) in topics.items()
            },
            timeout_ms=int(timeout_s * 1000),
        )
        self._client.wait_for_topics(list(topics), timeout_ms=int(timeout_s * 1000))

    def topics(self, prefix: str) -> list[str]:
        return sorted(t for t in self._client.list_topics() if t.startswith(prefix))

    def partitions(self, topic: str) -> list[int]:
        if topic not in self._partitions:
            described = self._client.describe_topics([topic])
            self._partitions[topic] = sorted(p["partition_index"] for p in described[0]["partitions"])
        return self._partitions[topic]

    def end_offsets(self, topics: Iterable[str]) -> dict[str, int]:
        """Sum of the end offsets of each topic's partitions (its record count on a fresh topic)."""
        specs = {SyncTopicPartition(t, p): OffsetSpec.LATEST for t in topics for p in self.partitions(t)}
        if not specs:
            return {}
        totals: dict[str, int] = {}
        for tp, found in self._client.list_partition_offsets(specs).items():
            totals[tp.topic] = totals.get(tp.topic, 0) + found.offset
        return totals

    def delete_prefix(self, prefix: str) -> list[str]:
        """Every topic and consumer group of a run: repeated runs must not fill the broker's disk."""
        topics = self.topics(prefix)
        if topics:
            self._client.delete_topics(topics, timeout_ms=60_000, raise_errors=False)
        groups = [g["group_id"] for g in self._client.list_groups() if str(g.get("group_id", "")).startswith(prefix)]
        if groups:
            with contextlib.suppress(Exception):  # a group still shutting down is removed by the broker later
                self._client.delete_groups(groups)
        for topic in topics:
            self._partitions.pop(topic, None)
        return topics


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes, bytes]],
    *,
    deadline: Deadline,
    progress: Callable[[int], None] | None = None,
    partition: int | None = None,
) -> Produced:
    """Produce (key, value) records, acks=all, keyed like every producer of the project
    (murmur2), or all into `partition`. Raises StepTimeout past the deadline."""
    return asyncio.run(_produce(bootstrap, topic, records, deadline, progress, partition))


async def _produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes, bytes]],
    deadline: Deadline,
    progress: Callable[[int], None] | None,
    partition: int | None = None,
) -> Produced:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024, client_id="threadlink-bench"
    )
    await producer.start()
    started = time.perf_counter()
    futures: list[asyncio.Future[Any]] = []
    try:
        for count, (key, value) in enumerate(records, 1):
            futures.append(await producer.send(topic, key=key, value=value, partition=partition))
            if count % 5000 == 0:
                deadline.check(f"producing to {topic}")
                if progress:
                    progress(count)
                await asyncio.sleep(0)
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    positions = [(m.partition, m.offset) for m in metadata]
    return Produced(len(positions), time.perf_counter() - started, positions)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition the project's producers (murmur2, like Kafka's default) give `key`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def read_outputs(bootstrap: str, topic: str, partitions: list[int], *, timeout_s: float = 120) -> list[Output]:
    """Every record of `topic`, from the beginning to the end offsets seen at the start."""
    return asyncio.run(_read_outputs(bootstrap, [TopicPartition(topic, p) for p in partitions], timeout_s))


async def _read_outputs(bootstrap: str, partitions: list[TopicPartition], timeout_s: float) -> list[Output]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        client_id="threadlink-bench",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    outputs: list[Output] = []
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        stop_at = time.monotonic() + timeout_s
        while any([await consumer.position(tp) < end[tp] for tp in partitions]):
            if time.monotonic() > stop_at:
                raise StepTimeout(f"reading {partitions[0].topic} back took longer than {timeout_s:.0f} s")
            batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
            for tp, batch in batches.items():
                outputs.extend(Output(tp.partition, r.offset, r.timestamp, r.value) for r in batch)
    finally:
        await consumer.stop()
    return outputs
