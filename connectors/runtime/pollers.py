"""Runs polling sources with their cursors checkpointed in Kafka, each on exactly one replica.

Ownership is Kafka's group membership, not a lock of our own. Each poller's checkpoint key
(`<connector>/<poller>`) hashes to one partition of `<ns>.connectors.checkpoints`. Every
replica's `PollerGroup` joins one consumer group on that topic. The member assigned a
partition owns the pollers whose keys hash to it:

1. It reads the partition to its end (read committed) and so knows each poller's latest cursor.
2. It creates the poller's transactional producer (`transactional.id` from namespace, connector
   and poller). `init_transactions` fences any earlier owner that still thinks it owns the
   poller (a zombie), and aborts what that one left open.
3. Each poll's events and its new cursor are published in one transaction: a crash at any
   moment leaves either both or neither, so the next owner resumes with no gap and no
   duplicate for read-committed readers.
4. When the partition is revoked, the rebalance callback stops the poller (cancelling a poll in
   progress, aborting its transaction) before it returns, so the group hands the partition on
   only once this replica has stopped polling it.

Threads: the group consumer lives on one thread of its own (kafka-python consumers are not
thread-safe; the rebalance callbacks run inside its `poll`), each transactional producer on
another; pollers themselves run on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, ProducerFencedError
from kafka.partitioner.default import murmur2
from pydantic import TypeAdapter, ValidationError

from connectors.base import Cursor, PollingSource, PollResult
from connectors.errors import RetriableError
from connectors.runtime.kafka import PublishError, check_record_size
from connectors.runtime.limits import MAX_RECORD_BYTES
from connectors.runtime.metrics import EVENTS_PUBLISHED, POLLS
from schemas import events
from schemas.checkpoints import Checkpoint, checkpoint_key
from schemas.envelope import Envelope, utcnow
from schemas.topics import TopicNames

log = logging.getLogger(__name__)

CHECKPOINT = TypeAdapter(Envelope[Checkpoint])
T = TypeVar("T")

#: How long a revoked poller may take to stop before the rebalance goes on without it (its
#: producer is fenced by the next owner anyway).
RELEASE_TIMEOUT_S = 30.0
MAX_BACKOFF_S = 300.0


def checkpoint_partition(key: str, partitions: int) -> int:
    """The partition of the checkpoint topic a poller's key lives on: the producer's default
    partitioner (murmur2), computed here so that writer and owner always agree."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


@dataclass
class _Owned:
    """A poller this replica owns right now."""

    fenced: asyncio.Future[None]
    """Done once its producer fenced the previous owner: only then is the partition read to its end."""
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


@dataclass
class PollerGroup:
    """All pollers of one process. `await start()`, then `await run()` until `stop()`."""

    bootstrap_servers: str
    topics: TopicNames
    pollers: list[tuple[str, PollingSource]]
    client_id: str = "threadlink-pollers"
    clock: Callable[[], float] = time.monotonic
    _by_key: dict[str, tuple[str, PollingSource]] = field(default_factory=dict, init=False)
    _cursors: dict[str, Cursor] = field(default_factory=dict, init=False)
    _owned: dict[str, _Owned] = field(default_factory=dict, init=False)
    _catching_up: dict[TopicPartition, int] = field(default_factory=dict, init=False)
    _newly_assigned: set[TopicPartition] = field(default_factory=set, init=False)
    _partitions: int = field(default=0, init=False)
    _background: set[asyncio.Task[None]] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        for connector, poller in self.pollers:
            key = checkpoint_key(connector, poller.name)
            if key in self._by_key:
                raise ValueError(f"two pollers of connector {connector!r} are named {poller.name!r}")
            self._by_key[key] = (connector, poller)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="poller-group")
        self._consumer: KafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def group_id(self) -> str:
        return f"{self.topics.namespace}.connectors.pollers"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._consumer = await self._in_thread(self._subscribe)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Keeps the group membership alive and the cursors current; starts and stops pollers
        as partitions come and go."""
        try:
            while not self._stopping.is_set():
                assigned, ready = await self._in_thread(self._poll_once)
                for tp in assigned:
                    self._take_over(tp)
                for tp in ready:
                    for key in self._keys_of(tp):
                        if key in self._owned:
                            self._owned[key].caught_up.set()
        finally:
            await self._release(list(self._owned))
            await self._in_thread(self._close)
            self._thread.shutdown(wait=False)

    # -- the consumer thread -----------------------------------------------------------------

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _subscribe(self) -> KafkaConsumer:
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap_servers.split(","),
            client_id=self.client_id,
            group_id=self.group_id,
            enable_auto_commit=False,  # no offsets: every owner reads its partitions from the start
            auto_offset_reset="earliest",
            isolation_level="read_committed",  # a cursor counts only with its events
        )
        group = self

        class HandOver(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                group._on_revoked(set(revoked))

            def on_partitions_assigned(self, assigned: Any) -> None:
                group._newly_assigned |= set(assigned)

        # Learn the topic's partitions before joining: a group leader that does not know them yet
        # assigns nothing ("No partition metadata") and the group must rebalance again.
        if not consumer.partitions_for_topic(self.topics.checkpoints):
            log.warning(
                "%s does not exist: run `threadlink topics apply`; no poller runs until it does",
                self.topics.checkpoints,
            )
        consumer.subscribe([self.topics.checkpoints], listener=HandOver())
        return consumer

    def _poll_once(self) -> tuple[list[TopicPartition], list[TopicPartition]]:
        """One consumer poll: new checkpoints noted. Returns the partitions newly assigned
        (sought to their start) and those now read to their end (their pollers may start)."""
        consumer = self._consumer
        assert consumer is not None
        for records in consumer.poll(timeout_ms=300).values():
            for record in records:
                self._note(record)
        assigned: list[TopicPartition] = []
        if self._newly_assigned:
            assigned, self._newly_assigned = sorted(self._newly_assigned), set()
            self._partitions = len(consumer.partitions_for_topic(self.topics.checkpoints) or ())
            consumer.seek_to_beginning(*assigned)  # re-read: what came before is of the last owner
        ready = [tp for tp, end in self._catching_up.items() if consumer.position(tp) >= end]
        for tp in ready:
            del self._catching_up[tp]
        return assigned, ready

    def _read_to_end(self, tp: TopicPartition) -> None:
        """After fencing: the end (last stable offset) no zombie can move any more."""
        assert self._consumer is not None
        if tp in self._consumer.assignment():
            self._catching_up.update(self._consumer.end_offsets([tp]))

    def _note(self, record: Any) -> None:
        key = record.key.decode() if isinstance(record.key, bytes) else None
        if key not in self._by_key:
            return
        try:
            self._cursors[key] = CHECKPOINT.validate_json(record.value).data.cursor
        except ValidationError:
            log.warning("checkpoint %s at %s[%d]@%d is not a checkpoint; ignored", key, *record[:3])

    def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        """In the consumer thread, inside poll(): stop the pollers of `revoked` and wait for
        them, so that no two replicas ever poll the same poller at once."""
        for tp in revoked:
            self._catching_up.pop(tp, None)
        keys = [key for key in self._owned if self._partition_of(key) in {tp.partition for tp in revoked}]
        if not keys or self._loop is None:
            return
        done = asyncio.run_coroutine_threadsafe(self._release(keys), self._loop)
        try:
            done.result(RELEASE_TIMEOUT_S)
        except Exception as exc:  # fenced by the next owner in any case
            log.warning("pollers %s did not stop within %.0fs of their revocation: %r", keys, RELEASE_TIMEOUT_S, exc)

    def _close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()

    # -- on the loop ---------------------------------------------------------------------------

    def _partition_of(self, key: str) -> int:
        return checkpoint_partition(key, self._partitions)

    def _keys_of(self, tp: TopicPartition) -> list[str]:
        return [key for key in self._by_key if self._partition_of(key) == tp.partition]

    def _take_over(self, tp: TopicPartition) -> None:
        keys = [key for key in self._keys_of(tp) if key not in self._owned]
        for key in keys:
            connector, poller = self._by_key[key]
            owned = _Owned(fenced=asyncio.get_running_loop().create_future())
            owner = _PollerOwner(self, connector, poller, key, tp.partition, owned)
            owned.task = asyncio.create_task(owner.run(), name=f"poll-{key}")
            self._owned[key] = owned
        if keys:
            reading = asyncio.create_task(self._when_fenced(tp, [self._owned[key] for key in keys]))
            self._background.add(reading)
            reading.add_done_callback(self._background.discard)

    async def _when_fenced(self, tp: TopicPartition, owners: list[_Owned]) -> None:
        await asyncio.gather(*(owner.fenced for owner in owners), return_exceptions=True)
        if not self._stopping.is_set():
            await self._in_thread(self._read_to_end, tp)

    def cursor_of(self, key: str, poller: PollingSource) -> Cursor:
        return self._cursors.get(key, poller.initial_cursor)

    async def _release(self, keys: list[str]) -> None:
        tasks = [entry.task for entry in (self._owned.pop(key) for key in keys if key in self._owned) if entry.task]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for key in keys:
            self._cursors.pop(key, None)  # the next owner's checkpoints are newer: read them again
        if keys:
            log.info("poller(s) %s: released", ", ".join(keys))


@dataclass
class _PollerOwner:
    """One owned poller: its transactional producer and its poll loop."""

    group: PollerGroup
    connector: str
    poller: PollingSource
    key: str
    partition: int
    owned: _Owned
    executor: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"poller-{self.key}")

    @property
    def transactional_id(self) -> str:
        return f"{self.group.topics.namespace}.poller.{self.key}"

    async def run(self) -> None:
        producer: KafkaProducer | None = None
        started = False
        try:
            try:
                producer = await self._in_thread(self._producer)
            finally:
                self.owned.fenced.set_result(None)
            await self.owned.caught_up.wait()
            cursor = self.group.cursor_of(self.key, self.poller)
            log.info("poller %s: this replica owns it now, from cursor %.80r", self.key, cursor)
            await self.poller.start()
            started = True
            await self._loop(producer, cursor)
        except ProducerFencedError:
            log.warning("poller %s: fenced by a newer owner; stopping here", self.key)
        finally:
            if started:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.poller.stop())
            if producer is not None:
                # Queued behind a commit in progress, if any: once this returns, this owner is done.
                await asyncio.shield(self._in_thread(self._close, producer))
            self.executor.shutdown(wait=False)

    async def _loop(self, producer: KafkaProducer, cursor: Cursor) -> None:
        delay = self.poller.interval_s
        while True:
            try:
                result = await self.poller.poll(cursor)
                await self._in_thread(self._commit, producer, result)
            except ProducerFencedError:
                raise
            except RetriableError as exc:
                delay = min(max(delay, self.poller.interval_s) * 2, MAX_BACKOFF_S)
                POLLS.labels(self.connector, "retried").inc()
                log.warning("poller %s: %s; next try in %.0fs", self.key, exc, delay)
                await asyncio.sleep(delay)
                continue
            except Exception:  # a bug in one poller must not stop the others
                POLLS.labels(self.connector, "failed").inc()
                log.exception("poller %s failed; next try in %.0fs", self.key, self.poller.interval_s)
                await asyncio.sleep(self.poller.interval_s)
                continue
            POLLS.labels(self.connector, "done").inc()
            cursor, delay = result.cursor, self.poller.interval_s
            if not result.more:
                await asyncio.sleep(delay)

    # -- the producer thread -----------------------------------------------------------------

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def _producer(self) -> KafkaProducer:
        producer = KafkaProducer(
            bootstrap_servers=self.group.bootstrap_servers.split(","),
            client_id=f"{self.group.client_id}-{self.key}",
            transactional_id=self.transactional_id,
            acks="all",
            enable_idempotence=True,
            max_request_size=MAX_RECORD_BYTES + 16 * 1024,
            max_block_ms=10_000,
        )
        try:
            producer.init_transactions()  # fences the previous owner and aborts its open transaction
        except BaseException:
            producer.close(timeout=5)
            raise
        return producer

    def _commit(self, producer: KafkaProducer, result: PollResult) -> None:
        checkpoint = Checkpoint(
            connector=self.connector, source=self.poller.name, cursor=result.cursor, updated_at=utcnow()
        )
        envelope = Envelope.wrap(
            checkpoint, type=events.CHECKPOINT, source_system=self.connector, subject=self.key, visibility="restricted"
        )
        records = [(t, k, e.to_bytes(), e.kafka_headers()) for t, k, e in result.events]
        for topic, key, value, headers in records:
            check_record_size(topic, value, headers, key.encode())
        try:
            producer.begin_transaction()
            for topic, key, value, headers in records:
                producer.send(topic, key=key.encode(), value=value, headers=headers)
            producer.send(
                self.group.topics.checkpoints,
                key=self.key.encode(),
                value=envelope.to_bytes(),
                headers=envelope.kafka_headers(),
                partition=self.partition,
            )
            producer.commit_transaction()
        except ProducerFencedError:
            raise
        except KafkaError as exc:
            with contextlib.suppress(KafkaError):
                producer.abort_transaction()
            raise PublishError(f"poller {self.key}: the transaction did not commit: {exc}") from exc
        for topic, _, _, _ in records:
            EVENTS_PUBLISHED.labels(self.connector, topic).inc()

    def _close(self, producer: KafkaProducer) -> None:
        producer.close(timeout=10)  # an open transaction is aborted by the next owner's init_transactions
