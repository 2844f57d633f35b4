"""Runs polling sources with their cursors checkpointed in Kafka, each on exactly one replica.

Ownership is Kafka's group membership, not a lock of our own. Each poller's checkpoint key
(`<connector>/<poller>`) hashes to one partition of `<ns>.connectors.checkpoints`. Every
replica's `PollerGroup` joins one consumer group on that topic. The member assigned a
partition owns the pollers whose keys hash to it:

1. It reads the partition to its end (read committed) and so knows each poller's latest cursor.
2. It creates the poller's transactional producer (`transactional.id` from namespace, connector
   and poller). `init_transactions` fences any earlier owner that still thinks it owns the
   poller (a zombie), and aborts what that one left open. Only then is the partition's end
   (its last stable offset) taken, so the cursor read is the last one any owner committed.
3. Each poll's events and its new cursor are published in one transaction: a crash at any
   moment leaves either both or neither, so the next owner resumes with no gap and no
   duplicate for read-committed readers.
4. When the partition is revoked, the rebalance callback stops the poller before it returns, so
   the group hands the partition on only once this replica has stopped polling it: a poll in
   progress is cancelled (nothing of it was published), but a transaction already begun is
   committed and a producer being initialised is waited for, then closed. A producer of this
   replica that outlived its ownership would fence the next owner.
5. A fenced producer means another owner took over: the poller steps down (one warning) and
   does not retry with a producer that can never commit again.

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


def is_fenced(exc: BaseException, producer: KafkaProducer | None = None) -> bool:
    """Whether `exc` (from a transactional method or a send) means a newer producer with the same
    transactional id fenced this one (kafka-python reports the broker's INVALID_PRODUCER_EPOCH to
    transactional requests as that too). It raises ProducerFencedError itself only sometimes: a
    send after the fencing raises a plain KafkaError carrying it as an argument, and later
    transactional calls a KafkaError that only names it in its message, so the producer's own
    fatal error is consulted too."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        error = todo.pop()
        if not isinstance(error, BaseException) or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, ProducerFencedError):
            return True
        todo += [*error.args, error.__cause__, error.__context__]
    manager = getattr(producer, "_transaction_manager", None)  # kafka-python has no public accessor
    return isinstance(getattr(manager, "last_error", None), ProducerFencedError)


@dataclass
class _Owned:
    """A poller this replica owns right now."""

    fenced: asyncio.Future[None]
    """Done once its producer fenced the previous owner: only then is the partition read to its end."""
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    released: bool = False
    """Set when this replica let go of it (revocation or stop): a later owner is another `_Owned`."""


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
    _catching_up: list[tuple[TopicPartition, int, list[_Owned]]] = field(default_factory=list, init=False)
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
                for owner in ready:
                    if not owner.released:
                        owner.caught_up.set()
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

            # on_partitions_lost (this member was evicted) defaults to on_partitions_revoked: the
            # pollers stop the same way, and the next owner's init_transactions fences them anyway.

        consumer.subscribe([self.topics.checkpoints], listener=HandOver())
        # Learn the topic's partitions after subscribing and before joining (topics() always asks
        # the broker): the group coordinator snapshots the subscribed topics' partitions on each
        # metadata update, and a leader that assigns from an empty snapshot must rebalance again
        # as soon as the metadata comes. That second rebalance is not only churn: kafka-python
        # 3.0 forgets a join still in flight when a poll's timeout ends it and the rebalance was
        # asked for by the snapshot alone, leaving this member without partitions or heartbeats.
        if self.topics.checkpoints not in consumer.topics():
            log.warning(
                "%s does not exist: run `threadlink topics apply`; no poller runs until it does",
                self.topics.checkpoints,
            )
        return consumer

    def _poll_once(self) -> tuple[list[TopicPartition], list[_Owned]]:
        """One consumer poll: new checkpoints noted. Returns the partitions newly assigned
        (sought to their start) and the owners whose partition is now read to the end taken
        after their fencing (their pollers may start)."""
        consumer = self._consumer
        assert consumer is not None
        for records in consumer.poll(timeout_ms=300).values():
            for record in records:
                self._note(record)
        assigned: list[TopicPartition] = []
        if self._newly_assigned:
            # One poll may hold several rebalances (the first join is often followed at once by a
            # second, once the leader has the topic's metadata): only what is still ours counts.
            current = consumer.assignment()
            assigned = sorted(tp for tp in self._newly_assigned if tp in current)
            self._newly_assigned = set()
            self._partitions = len(consumer.partitions_for_topic(self.topics.checkpoints) or ())
            if assigned:
                consumer.seek_to_beginning(*assigned)  # re-read: what came before is of the last owner
        ready: list[_Owned] = []
        waiting: list[tuple[TopicPartition, int, list[_Owned]]] = []
        for tp, end, owners in self._catching_up:
            if consumer.position(tp) >= end:
                ready += owners
            else:
                waiting.append((tp, end, owners))
        self._catching_up = waiting
        return assigned, ready

    def _read_to_end(self, tp: TopicPartition, owners: list[_Owned]) -> None:
        """After fencing: the end (last stable offset) no zombie can move any more."""
        assert self._consumer is not None
        # A rebalance in the polls since the fencing may have taken the partition (and these
        # owners) away; a new owner of it takes its own end once it has fenced.
        if tp in self._consumer.assignment() and not any(owner.released for owner in owners):
            self._catching_up.append((tp, self._consumer.end_offsets([tp])[tp], owners))

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
        self._newly_assigned -= revoked  # assigned and revoked again within one poll
        self._catching_up = [entry for entry in self._catching_up if entry[0] not in revoked]
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
        if not self._stopping.is_set() and not any(owner.released for owner in owners):
            await self._in_thread(self._read_to_end, tp, owners)

    def cursor_of(self, key: str, poller: PollingSource) -> Cursor:
        return self._cursors.get(key, poller.initial_cursor)

    async def _release(self, keys: list[str]) -> None:
        entries = [self._owned.pop(key) for key in keys if key in self._owned]
        for entry in entries:
            entry.released = True
        tasks = [entry.task for entry in entries if entry.task]
        for task in tasks:
            task.cancel()  # the owner finishes what cannot be interrupted; see _PollerOwner.run
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
        """The task `PollerGroup` starts when this replica is assigned the poller's partition and
        cancels when it is revoked (or the group stops). Cancellation stops it at the next
        point where stopping loses nothing: a poll in progress is dropped, but a producer
        being initialised or a transaction being committed runs to its end in the producer
        thread, and the producer is closed after it, before this task finishes."""
        producer: KafkaProducer | None = None
        started = False
        try:
            try:
                producer = await self._new_producer()
            finally:
                if not self.owned.fenced.done():
                    self.owned.fenced.set_result(None)
            await self.owned.caught_up.wait()
            cursor = self.group.cursor_of(self.key, self.poller)
            log.info("poller %s: this replica owns it now, from cursor %.80r", self.key, cursor)
            await self.poller.start()
            started = True
            await self._loop(producer, cursor)
        except ProducerFencedError:
            log.warning("poller %s: fenced by a newer owner; this replica stops polling it", self.key)
        finally:
            if started:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.poller.stop())
            if producer is not None:
                # Queued behind a commit in progress, if any: once this returns, this owner is done.
                await asyncio.shield(self._in_thread(self._close, producer))
            self.executor.shutdown(wait=False)

    async def _new_producer(self) -> KafkaProducer:
        """The poller's transactional producer, once `init_transactions` fenced the previous owner.
        Retried while the broker is slow or away (this replica still owns the partition)."""
        delay = self.poller.interval_s
        while True:
            making = asyncio.ensure_future(self._in_thread(self._producer))
            try:
                return await asyncio.shield(making)
            except asyncio.CancelledError:
                # init_transactions cannot be interrupted: had it finished after the next owner's,
                # it would fence that owner. Wait for it and close what it made before stopping.
                with contextlib.suppress(Exception):
                    await self._in_thread(self._close, await making)
                raise
            except KafkaError as exc:
                delay = min(max(delay, 1.0) * 2, MAX_BACKOFF_S)
                log.warning("poller %s: no transactional producer yet: %r; next try in %.1fs", self.key, exc, delay)
                await asyncio.sleep(delay)

    async def _loop(self, producer: KafkaProducer, cursor: Cursor) -> None:
        delay = self.poller.interval_s
        while True:
            try:
                result = await self.poller.poll(cursor)
                # Shielded: a poll whose result came back is published, even if the partition is
                # revoked meanwhile; run()'s close waits for it in the same thread.
                await asyncio.shield(self._in_thread(self._commit, producer, result))
            except ProducerFencedError:
                raise
            except RetriableError as exc:
                delay = min(max(delay, self.poller.interval_s) * 2, MAX_BACKOFF_S)
                # The platform said how long (a 429's Retry-After): that, not our own guess, so a
                # rate-limited export resumes as soon as it may. This poller's task alone waits.
                wait = min(max(exc.retry_after, 0.0), MAX_BACKOFF_S) if exc.retry_after is not None else delay
                POLLS.labels(self.connector, "retried").inc()
                log.warning("poller %s: %s; next try in %.1fs", self.key, exc, wait)
                await asyncio.sleep(wait)
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
        except KafkaError as exc:
            if is_fenced(exc, producer):
                # Fatal for this producer: nothing it sends can commit any more, so no retry.
                raise ProducerFencedError() from exc
            with contextlib.suppress(KafkaError):
                producer.abort_transaction()
            raise PublishError(f"the transaction did not commit: {exc}") from exc
        for topic, _, _, _ in records:
            EVENTS_PUBLISHED.labels(self.connector, topic).inc()

    def _close(self, producer: KafkaProducer) -> None:
        producer.close(timeout=10)  # an open transaction is aborted by the next owner's init_transactions
