"""The batched publisher of stream sources: many events per trip to the producer thread, a
bounded number in flight, and a delivery handle per event that completes once the broker has it.

One awaited publish per event (what webhooks do) costs a thread hop and a round trip each and
cannot keep up with shop-floor telemetry. Here `emit` only queues: a batch goes to the producer
when it holds `batch_size` events or when `linger_s` has passed since its first event. The
producer (acks=all, idempotent) then batches on the wire as usual.

Backpressure: at most `max_in_flight` events are queued or unacknowledged; `emit` waits for
room, so a slow broker slows the upstream client instead of growing memory.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kafka.errors import KafkaError

from connectors.runtime.kafka import KafkaPublisher, PublishError, check_record_size
from connectors.runtime.metrics import EVENTS_PUBLISHED, STREAM_BATCHES
from schemas.envelope import Envelope

_Record = tuple[str, bytes, bytes, list[tuple[str, bytes]]]


class BatchedPublisher:
    """Implements connectors.base.Emit for one connector's stream source, on one event loop.

    Example::

        emit = BatchedPublisher(publisher, connector="mes", linger_s=0.01, batch_size=500)
        delivery = await emit(topic, key, envelope)   # returns at once (unless full)
        await delivery                                # the broker has it: acknowledge upstream
        await emit.flush()                            # or wait for everything emitted so far
    """

    def __init__(
        self,
        publisher: KafkaPublisher,
        *,
        connector: str,
        linger_s: float = 0.005,
        batch_size: int = 500,
        max_in_flight: int = 10_000,
    ) -> None:
        if batch_size < 1 or max_in_flight < batch_size or linger_s < 0:
            raise ValueError("need batch_size >= 1, max_in_flight >= batch_size and linger_s >= 0")
        self.connector = connector
        self.linger_s = linger_s
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self._producer = publisher.producer
        self._room = asyncio.Semaphore(max_in_flight)
        self._batch: list[_Record] = []
        self._delivery: asyncio.Future[None] | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._outstanding: set[asyncio.Future[None]] = set()
        # One thread: batches reach the producer in the order they were emitted (per-key order).
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"emit-{connector}")
        self._in_flight = 0
        self.batches_sent = 0

    @property
    def in_flight(self) -> int:
        """Events emitted and not yet settled (queued or awaiting the broker)."""
        return self._in_flight

    async def __call__(self, topic: str, key: str, envelope: Envelope[Any]) -> asyncio.Future[None]:
        value, headers, encoded_key = envelope.to_bytes(), envelope.kafka_headers(), key.encode()
        check_record_size(topic, value, headers, encoded_key)  # EventTooLarge: it would never fit
        await self._room.acquire()
        self._in_flight += 1
        loop = asyncio.get_running_loop()
        if self._delivery is None:
            self._delivery = loop.create_future()
            self._outstanding.add(self._delivery)
            self._delivery.add_done_callback(self._outstanding.discard)
            self._linger = loop.call_later(self.linger_s, self._send_batch)
        delivery = self._delivery
        self._batch.append((topic, encoded_key, value, headers))
        if len(self._batch) >= self.batch_size:
            self._send_batch()
        return delivery

    async def flush(self) -> None:
        """Wait until everything emitted so far is acknowledged; raises PublishError if any
        of it was not."""
        self._send_batch()
        pending = list(self._outstanding)
        if pending:
            await asyncio.gather(*pending)

    def close(self) -> None:
        """After the last flush. The producer belongs to the KafkaPublisher and stays open."""
        self._thread.shutdown(wait=False)

    # -- internals -----------------------------------------------------------------------------

    def _send_batch(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        batch, delivery = self._batch, self._delivery
        self._batch, self._delivery = [], None
        if not batch or delivery is None:
            return
        loop = asyncio.get_running_loop()
        loop.run_in_executor(self._thread, self._produce, loop, batch, delivery)

    def _produce(self, loop: asyncio.AbstractEventLoop, batch: list[_Record], delivery: asyncio.Future[None]) -> None:
        """On the emit thread: hand the batch to the producer; the last acknowledgement (or the
        first failure) settles the batch's delivery on the loop, once."""
        remaining = len(batch)
        lock = threading.Lock()
        failure: list[BaseException] = []

        def acknowledged(_: Any = None, error: BaseException | None = None) -> None:
            nonlocal remaining
            with lock:
                if error is not None and not failure:
                    failure.append(error)
                remaining -= 1
                last = remaining == 0
            if last:
                loop.call_soon_threadsafe(self._settle, batch, delivery, failure[0] if failure else None)

        for index, (topic, key, value, headers) in enumerate(batch):
            try:
                future = self._producer.send(topic, key=key, value=value, headers=headers)
            except KafkaError as exc:  # metadata or buffer wait timed out: the rest fail with it
                for _ in batch[index:]:
                    acknowledged(error=exc)
                return
            future.add_callback(acknowledged)
            future.add_errback(lambda exc: acknowledged(error=exc))

    def _settle(self, batch: list[_Record], delivery: asyncio.Future[None], error: BaseException | None) -> None:
        self._in_flight -= len(batch)
        for _ in batch:
            self._room.release()
        self.batches_sent += 1
        STREAM_BATCHES.labels(self.connector).inc()
        if error is None:
            for topic, count in Counter(record[0] for record in batch).items():
                EVENTS_PUBLISHED.labels(self.connector, topic).inc(count)
        if delivery.done():
            return
        if error is None:
            delivery.set_result(None)
        else:
            delivery.set_exception(PublishError(f"broker did not acknowledge a batch of {len(batch)}: {error}"))
            # Retrieved here so an unawaited handle does not log "exception was never retrieved".
            delivery.exception()
