"""Four changes to faust-streaming (0.15.x, aiokafka driver) and the aiokafka client it drives
that threadlink carries until upstream has them. `install()` applies them all;
`streams.app.create_app` calls it. Each is tested where it acts (tests/unit/streams/
test_faust_fixes.py) and on the real broker (tests/integration/test_streams_restart.py,
test_producer_metadata.py, test_bench_smoke.py); docs/upstream/faust.md is the note for the
maintainers.

1. A restarted or rebalanced worker silently skipped records that were waiting for it
   (faust-streaming issues #216, #312, #606 are of this class). When table recovery ends,
   `Recovery.on_recovery_completed` resumes the stream partitions and only then awaits
   `Consumer.perform_seek()`, with the consumer's flow still active: the fetcher keeps handing
   records to the streams while the seek runs. The seek then rewinds the fetch position and
   resets the read offsets under the fetcher's feet, and `flow_control.resume()` afterwards
   discards every event still queued. Records were lost three ways: dropped from the queues with
   the read offset already past them; re-fetched copies dropped as "already read"; and the
   stretch between the reset read offset and the rest of the old batch recorded as a gap (which
   Faust treats as done) and committed. Seen in 24 of 33 runs with the memory store and 7 of 18
   with RocksDB (a worker started with 2,000 messages waiting); none in 42 runs with this fix.

   The fix makes `perform_seek` atomic with respect to the fetcher: it stops the flow first (so
   `getmany` hands out nothing more: it checks `flow_active` before each record), waits until
   the record the drain loop has in hand is delivered or abandoned, then seeks and sets the
   read offsets; partitions with no committed offset (aiokafka's `seek_to_committed` skips
   them) go back to the beginning when `consumer_auto_offset_reset` is "earliest", as at
   assignment, since records of theirs may have been handed out and are about to be discarded.
   It leaves the flow stopped: both callers call `app.flow_control.resume()` (which empties the
   stream queues of what was fetched before the seek) and then `consumer.resume_flow()`, with no
   await in between, so nothing fetched after the seek can be discarded.

2. Faust reads with `read_committed` only under its exactly-once guarantee. threadlink's
   pollers publish a poll's events and its cursor in one Kafka transaction, so a poll that was
   cut off is aborted, and its events must never reach the flows: the worker's consumer reads
   committed records only, whatever the guarantee.

3. A worker's first start could lose events for minutes. Faust creates its own topics (the
   tables' changelogs) at start and subscribes to them at once; a topic created a moment ago
   may not be listed yet by the broker (KRaft applies it to the broker's metadata a little
   later, longer on a busy machine). aiokafka's group coordinator then snapshots it with 0
   partitions and asks again only when its metadata is 5 minutes old. Until then the topic's
   partitions are assigned to no one, and Faust's check of a table's changelog against its
   source topic (`Table.partition_for_key`) raises PartitionsMismatch ("the changelog topic has
   0 partitions") on every write: each event that changes that table fails and is
   dead-lettered. Seen in 4 of 104 bench table loads on a loaded 2-core machine (2 of 8 on a
   broker started minutes before): the sentinel message of `make bench` was dead-lettered and
   never got its card. None in 46 with this fix (the wait was needed in 2 of them).

   The fix: the consumer subscribes only once the broker lists every topic of the subscription
   with all its partitions led (bounded; it subscribes anyway after `LISTED_TIMEOUT_S`, saying
   which topics it did not see), so the coordinator's first snapshot is the true one.

4. An output could wait 20 minutes with nothing logged (aiokafka 0.14). The producer's client
   asks the broker about the topics it tracks, or about all topics while it tracks none; each
   answer replaces what it knew. Faust refreshes the producer's metadata after creating each
   of its topics, while it tracks none: from then on the producer knows every topic, and a
   send to a known topic does not track it. When a send to a topic it does not know (one
   created after that refresh, such as a changelog the broker had not listed yet) starts the
   tracking, the next answer covers only the tracked topics: the others are forgotten, and a
   batch already queued for one of them finds no leader and waits, re-asking only about the
   tracked topics, until another send to its topic or its expiry (`producer_request_timeout`,
   20 minutes). Seen in 2 of 104 bench table loads on a loaded machine (the sentinel's link
   request, or its PostCard, never written), none in 46 with the fix; 3 of 3 in a direct
   reproduction (tests/integration/test_producer_metadata.py).

   The fix: a send tracks its topic, so no answer forgets a topic something was sent to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from faust.transport.consumer import Consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.drivers.aiokafka import ensure_aiokafka_TP

log = logging.getLogger(__name__)

_INSTALLED = "_threadlink_fixes_installed"
#: How long a subscription waits for the broker to list its topics (fix 3).
LISTED_TIMEOUT_S = 60.0


def install() -> None:
    """Idempotent; call before the app starts."""
    if getattr(Consumer, _INSTALLED, False):
        return
    setattr(Consumer, _INSTALLED, True)
    _seek_atomically()
    _read_committed()
    _subscribe_once_listed()
    _track_every_topic_sent_to()


def _seek_atomically() -> None:
    original_getmany = Consumer.getmany

    async def getmany(self: Any, timeout: float) -> AsyncIterator[Any]:
        # The drain loop handles each record while this generator waits at the yield, and asks
        # for the next one only once it delivered (or gave up) this one and set its read offset.
        try:
            async for item in original_getmany(self, timeout):
                self._threadlink_draining = True
                yield item
                self._threadlink_draining = False
        finally:
            self._threadlink_draining = False

    async def perform_seek(self: Any) -> None:
        self.stop_flow()
        while getattr(self, "_threadlink_draining", False) and not self.should_stop:
            await asyncio.sleep(0.001)
        committed = await self.seek_to_committed()
        never_committed = [tp for tp, offset in committed.items() if not offset]
        if never_committed and self.app.conf.consumer_auto_offset_reset == "earliest":
            await self._thread.seek_to_beginning(*(ensure_aiokafka_TP(tp) for tp in never_committed))
        self._read_offset.update(
            {tp: offset if offset is not None and offset >= 0 else None for tp, offset in committed.items()}
        )
        self._committed_offset.update({tp: offset or None for tp, offset in committed.items() if offset is not None})

    Consumer.getmany = getmany  # type: ignore[method-assign]
    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]


def _read_committed() -> None:
    thread = faust_aiokafka.AIOKafkaConsumerThread
    original = thread._create_worker_consumer
    aiokafka = faust_aiokafka.aiokafka

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer_class = aiokafka.AIOKafkaConsumer

        def read_committed(*args: Any, **kwargs: Any) -> Any:
            return consumer_class(*args, **{**kwargs, "isolation_level": "read_committed"})

        # Only for this call: the driver builds its consumer with aiokafka's class by name.
        aiokafka.AIOKafkaConsumer = read_committed
        try:
            return original(self, transport)
        finally:
            aiokafka.AIOKafkaConsumer = consumer_class

    thread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]


def unlisted(cluster: Any, topics: Iterable[str]) -> list[str]:
    """The topics that aiokafka's cluster metadata `cluster` does not list with partitions that
    all have a leader (a topic the broker has not taken in yet has none)."""
    missing = []
    for topic in sorted(set(topics)):
        partitions = cluster.partitions_for_topic(topic) or set()
        leaders = [cluster.leader_for_partition(TopicPartition(topic, p)) for p in partitions]
        if not partitions or any(leader is None or leader < 0 for leader in leaders):
            missing.append(topic)
    return missing


async def wait_until_listed(client: Any, topics: Iterable[str], timeout_s: float = LISTED_TIMEOUT_S) -> list[str]:
    """Until the broker lists `topics` (fresh metadata of all topics each time: the client
    tracks only those it was told about); returns those still unlisted after `timeout_s`."""
    topics = set(topics)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            missing = unlisted(await client.fetch_all_metadata(), topics)
        except KafkaError:  # no broker answered this time
            missing = sorted(topics)
        if not missing or time.monotonic() >= deadline:
            return missing
        await asyncio.sleep(0.1)


def _subscribe_once_listed() -> None:
    thread = faust_aiokafka.AIOKafkaConsumerThread
    original = thread.subscribe

    async def subscribe(self: Any, topics: Iterable[str]) -> None:
        topics = set(topics)
        client = self._ensure_consumer()._client
        missing = await self.call_thread(wait_until_listed, client, topics)
        if missing:
            log.warning(
                "subscribing to %s although the broker does not list them with leaders after %.0f s; "
                "their partitions are assigned once the consumer's metadata is refreshed",
                ", ".join(missing),
                LISTED_TIMEOUT_S,
            )
        await original(self, topics)

    thread.subscribe = subscribe  # type: ignore[method-assign]


def _track_every_topic_sent_to() -> None:
    original = AIOKafkaClient._wait_on_metadata

    async def wait_on_metadata(self: Any, topic: str) -> Any:
        # Every send asks this first; the original tracks the topic only when it is unknown.
        if topic not in self._topics:
            self.add_topic(topic)  # the next metadata answer covers it (fetched in the background)
        return await original(self, topic)

    AIOKafkaClient._wait_on_metadata = wait_on_metadata  # type: ignore[method-assign]
