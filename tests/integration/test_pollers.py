"""Pollers on the real broker: cursors checkpointed with their events in one transaction, one
owner across replicas (Kafka's group membership), and a restart that resumes with no gap and
no duplicate."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from connectors.base import Cursor, PollingSource, PollResult
from connectors.runtime.pollers import PollerGroup
from schemas import events
from schemas.envelope import Envelope
from schemas.social import Author, SocialMessage, ThreadRef
from schemas.topics import TopicNames
from threadlink.config import Settings
from threadlink.topics_admin import apply_topics

pytestmark = pytest.mark.integration

#: What the platform holds: items 0..N-1, in the order the platform lists them.
ITEMS = 30


def item(n: int) -> Envelope[SocialMessage]:
    thread = ThreadRef(platform="feed", workspace="W1", channel="C1", thread_id=str(n % 3))
    data = SocialMessage(thread=thread, message_id=str(n), author=Author(id="U1"), text=f"item {n}")
    return Envelope.wrap(data, type=events.SOCIAL_MESSAGE.format(action="posted"), source_system="feed", id=f"feed:{n}")


class FeedPoller(PollingSource):
    """Pages of 4 items after the cursor's `next`; records which replica polled what."""

    name = "feed"
    interval_s = 0.05

    def __init__(self, topics: TopicNames, replica: str, log: list[tuple[str, int]], stop_after: int = ITEMS) -> None:
        self.topics, self.replica, self.log, self.stop_after = topics, replica, log, stop_after

    async def poll(self, cursor: Cursor) -> PollResult:
        start = int((cursor or {"next": 0})["next"])  # type: ignore[index]
        end = min(start + 4, self.stop_after)
        self.log.extend((self.replica, n) for n in range(start, end))
        found = [(self.topics.social_events, str(n), item(n)) for n in range(start, end)]
        return PollResult(events=found, cursor={"next": end}, more=end < self.stop_after)


@pytest.fixture
def topics(kafka_bootstrap: str, namespace: str, request: pytest.FixtureRequest) -> TopicNames:
    settings = Settings(
        kafka={
            "bootstrap_servers": kafka_bootstrap,
            "namespace": f"{namespace}-{request.node.name[-14:].lower().replace('_', '-')}",
        }
    )
    apply_topics(settings)
    return settings.kafka.topics


def committed_ids(bootstrap: str, topic: str) -> list[str]:
    """What a read-committed consumer sees of `topic`, in offset order per partition."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","), isolation_level="read_committed", enable_auto_commit=False
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        found: list[str] = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=500).values():
                found += [Envelope[SocialMessage].model_validate_json(r.value).id for r in records]
        return found
    finally:
        consumer.close()


async def run_group(group: PollerGroup) -> asyncio.Task[None]:
    await group.start()
    return asyncio.create_task(group.run())


async def until(predicate: Any, timeout_s: float = 90) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.05)


async def stop(group: PollerGroup, task: asyncio.Task[None]) -> None:
    group.stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 60)


async def test_a_restarted_poller_resumes_from_its_checkpoint_without_gap_or_duplicate(
    kafka_bootstrap: str, topics: TopicNames
) -> None:
    log: list[tuple[str, int]] = []
    first = PollerGroup(kafka_bootstrap, topics, [("feed", FeedPoller(topics, "a", log, stop_after=12))])
    task = await run_group(first)
    await until(lambda: len(log) >= 12)
    await stop(first, task)

    # The platform has more now; a new process (another replica, or the same after a restart) carries on.
    second = PollerGroup(kafka_bootstrap, topics, [("feed", FeedPoller(topics, "b", log))])
    task = await run_group(second)
    await until(lambda: len(log) >= ITEMS)
    await stop(second, task)

    assert next(n for replica, n in log if replica == "b") == 12  # resumed at the cursor
    assert committed_ids(kafka_bootstrap, topics.social_events).count("feed:0") == 1
    assert sorted(committed_ids(kafka_bootstrap, topics.social_events)) == sorted(f"feed:{n}" for n in range(ITEMS))


async def test_one_owner_at_a_time_and_the_other_replica_takes_over(kafka_bootstrap: str, topics: TopicNames) -> None:
    log: list[tuple[str, int]] = []
    # Two replicas with the same poller; the platform is slow (one page each interval).
    slow_a, slow_b = FeedPoller(topics, "a", log), FeedPoller(topics, "b", log)
    for poller in (slow_a, slow_b):
        poller.interval_s = 0.2
    a = PollerGroup(kafka_bootstrap, topics, [("feed", slow_a)], client_id="replica-a")
    b = PollerGroup(kafka_bootstrap, topics, [("feed", slow_b)], client_id="replica-b")
    task_a = await run_group(a)
    task_b = await run_group(b)
    await until(lambda: len(log) >= 8)
    owner = log[-1][0]
    await stop(*((a, task_a) if owner == "a" else (b, task_b)))  # the owner goes away
    other = "b" if owner == "a" else "a"
    await until(lambda: any(replica == other for replica, _ in log))
    await until(lambda: len(log) >= ITEMS)
    await stop(*((b, task_b) if owner == "a" else (a, task_a)))

    # Never both: each item was polled once, first by one replica, then by the other.
    numbers = [n for _, n in log]
    assert numbers == list(range(ITEMS))
    switches = sum(1 for x, y in itertools.pairwise(log) if x[0] != y[0])
    assert switches == 1
    assert sorted(committed_ids(kafka_bootstrap, topics.social_events)) == sorted(f"feed:{n}" for n in range(ITEMS))
