"""Kafka plumbing for connectors, on kafka-python: an acks=all idempotent publisher that
asyncio code can await, and reading a compacted topic to its end."""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import time
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, MessageSizeTooLargeError

from connectors.errors import RetriableError, SkippableError
from connectors.runtime import health, kafka_fixes
from connectors.runtime.limits import MAX_RECORD_BYTES
from connectors.runtime.metrics import EVENTS_PUBLISHED, PUBLISH_SECONDS
from schemas.envelope import Envelope

log = logging.getLogger(__name__)


class PublishError(RetriableError):
    """The broker did not acknowledge an event; the caller must not report success.
    Retriable: leader elections and brief outages heal."""


class EventTooLarge(SkippableError):
    """An event larger than the broker accepts for one record: retrying can never help."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=413)


def record_size(value: bytes, headers: list[tuple[str, bytes]], key: bytes | None = None) -> int:
    return len(value) + len(key or b"") + sum(len(name) + len(data) for name, data in headers)


def check_record_size(topic: str, value: bytes, headers: list[tuple[str, bytes]], key: bytes | None = None) -> None:
    size = record_size(value, headers, key)
    if size > MAX_RECORD_BYTES:
        raise EventTooLarge(f"an event for {topic} is {size} bytes; the broker takes at most {MAX_RECORD_BYTES}")


class KafkaPublisher:
    """Implements connectors.base.Publisher.

    acks=all + idempotence: an awaited publish is on every in-sync replica, and the
    producer's own retries never duplicate it. One producer per process; `labelled(name)`
    gives each connector a view of it that counts under the connector's name.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str,
        connector: str = "runtime",
        delivery_timeout_ms: int = 60_000,
        request_timeout_ms: int = 15_000,
    ) -> None:
        kafka_fixes.install()
        self._connector = connector
        # kafka-python sometimes never completes the future of a batch that was in flight when
        # its broker died (seen with a broker killed for longer than the delivery timeout): past
        # this, the send counts as failed, so a webhook is answered 503 instead of never.
        self._acknowledge_within_s = (delivery_timeout_ms + request_timeout_ms) / 1000 + 5
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers.split(","),
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            retries=2**31 - 1,
            delivery_timeout_ms=delivery_timeout_ms,
            request_timeout_ms=request_timeout_ms,
            max_block_ms=5_000,
            # Records up to the limit the HTTP layer enforces (limits.py), plus batch overhead.
            max_request_size=MAX_RECORD_BYTES + 16 * 1024,
        )

    @property
    def connector(self) -> str:
        return self._connector

    @property
    def producer(self) -> KafkaProducer:
        """The shared producer (thread-safe), for the batched publisher of stream sources."""
        return self._producer

    def labelled(self, connector: str) -> KafkaPublisher:
        """The same producer, with metrics under `connector`. Close only the original."""
        view = copy.copy(self)
        view._connector = connector
        return view

    async def publish(self, topic: str, key: str, envelope: Envelope[Any], *, partition: int | None = None) -> None:
        """`partition` None: the key's partition (the default partitioner)."""
        await self.publish_raw(topic, key, envelope.to_bytes(), envelope.kafka_headers(), partition=partition)

    async def publish_raw(
        self,
        topic: str,
        key: str | None,
        value: bytes,
        headers: list[tuple[str, bytes]],
        *,
        partition: int | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        started = time.perf_counter()

        def on_success(_metadata: Any) -> None:
            loop.call_soon_threadsafe(_settle, done, None)

        def on_error(exc: BaseException) -> None:
            loop.call_soon_threadsafe(_settle, done, exc)

        encoded_key = key.encode() if key is not None else None
        check_record_size(topic, value, headers, encoded_key)
        send = functools.partial(
            self._producer.send, topic, key=encoded_key, value=value, headers=headers, partition=partition
        )
        try:
            if self._producer._metadata.partitions_for_topic(topic) is not None:
                # The topic's partitions are known: send() only appends to a batch (kafka-python
                # 3's accumulator has no buffer to wait for). A hop to a thread here cost a
                # fifth of a sink's CPU per command.
                future = send()
            else:
                # Unknown topic: send() waits for its metadata (up to max_block_ms), never on the loop.
                future = await loop.run_in_executor(None, send)
        except MessageSizeTooLargeError as exc:
            raise EventTooLarge(f"an event for {topic} is too large: {exc}") from exc
        except KafkaError as exc:
            raise PublishError(f"cannot send to {topic}: {exc}") from exc
        future.add_callback(on_success)
        future.add_errback(on_error)
        try:
            await asyncio.wait_for(done, self._acknowledge_within_s)
        except TimeoutError:
            health.set_status("kafka", "the broker does not acknowledge what this process publishes")
            raise PublishError(f"no acknowledgement for {topic} within {self._acknowledge_within_s:.0f}s") from None
        except PublishError:
            health.set_status("kafka", "the broker does not acknowledge what this process publishes")
            raise
        health.set_status("kafka", None)
        PUBLISH_SECONDS.labels(self._connector).observe(time.perf_counter() - started)
        EVENTS_PUBLISHED.labels(self._connector, topic).inc()

    def close(self, timeout_s: float = 10) -> None:
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:  # what was not acknowledged was answered as failed: nothing is lost
            log.warning("publisher: closing with sends not acknowledged (%s)", exc)
        self._producer.close(timeout=timeout_s)


def _settle(future: asyncio.Future[None], exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(PublishError(f"broker did not acknowledge: {exc}"))


def standalone_consumer(bootstrap_servers: str, *, client_id: str) -> KafkaConsumer:
    """A consumer outside any group, committing nothing: for reading a topic back."""
    return KafkaConsumer(
        bootstrap_servers=bootstrap_servers.split(","),
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
    )


def read_to_end(bootstrap_servers: str, topic: str, *, client_id: str, timeout_s: float = 30) -> list[Any]:
    """Every record of `topic` from the beginning to the end offsets seen at the start.

    Blocking: call from a worker thread. Used to load the sink ledger (a compacted topic).
    """
    consumer = standalone_consumer(bootstrap_servers, client_id=client_id)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} to its end took longer than {timeout_s}s")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()
