"""The fixes to faust-streaming and aiokafka threadlink carries (streams/faust_fixes.py), each
checked where it acts: the seek after recovery hands out nothing while it moves the offsets, the
worker's consumer reads committed records only, and it subscribes only to topics the broker
lists. On the real broker: tests/integration/test_streams_restart.py (the seek),
tests/integration/test_producer_metadata.py (the producer tracks every topic it sends to) and
the bench's table load (tests/integration/test_bench_smoke.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from faust.types import TP
from yarl import URL

from streams import faust_fixes

pytestmark = pytest.mark.unit

A, B = TP("t", 0), TP("t", 1)


class Thread:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def seek_to_beginning(self, *tps: Any) -> None:
        self.log.append(f"seek_to_beginning {sorted(tp.partition for tp in tps)}")


def fake_consumer(log: list[str], committed: dict[TP, int | None]) -> Any:
    consumer = SimpleNamespace(
        should_stop=False,
        app=SimpleNamespace(conf=SimpleNamespace(consumer_auto_offset_reset="earliest")),
        _thread=Thread(log),
        _read_offset={A: 99, B: 99},
        _committed_offset={},
        _threadlink_draining=False,
    )

    def stop_flow() -> None:
        log.append("stop_flow")

    async def seek_to_committed() -> dict[TP, int | None]:
        log.append("seek_to_committed")
        return committed

    consumer.stop_flow, consumer.seek_to_committed = stop_flow, seek_to_committed
    return consumer


async def test_the_seek_stops_the_flow_first_waits_for_the_record_in_hand_and_leaves_the_flow_stopped() -> None:
    faust_fixes.install()
    log: list[str] = []
    consumer = fake_consumer(log, {A: 7, B: None})
    consumer._threadlink_draining = True  # the drain loop is handing out a record

    async def finish_drain() -> None:
        await asyncio.sleep(0.01)
        log.append("record delivered")
        consumer._threadlink_draining = False

    await asyncio.gather(Consumer.perform_seek(consumer), finish_drain())

    assert log == ["stop_flow", "record delivered", "seek_to_committed", "seek_to_beginning [1]"]
    assert consumer._read_offset == {A: 7, B: None}  # nothing read yet on a never-committed partition
    assert consumer._committed_offset == {A: 7}


def test_install_is_idempotent_and_patches_the_consumer_and_the_client() -> None:
    from aiokafka.client import AIOKafkaClient
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    def patched() -> tuple[Any, ...]:
        client = AIOKafkaClient._wait_on_metadata
        return Consumer.perform_seek, Consumer.getmany, AIOKafkaConsumerThread.subscribe, client

    faust_fixes.install()
    first = patched()
    faust_fixes.install()
    assert patched() == first
    assert {fn.__module__ for fn in first} == {faust_fixes.__name__}


def test_the_worker_consumer_reads_committed_records_only(monkeypatch: pytest.MonkeyPatch) -> None:
    faust_fixes.install()
    from faust.transport.drivers import aiokafka as driver

    built: dict[str, Any] = {}

    class Recorder:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.update(kwargs)

    monkeypatch.setattr(driver.aiokafka, "AIOKafkaConsumer", Recorder)
    thread = SimpleNamespace(
        consumer=SimpleNamespace(in_transaction=False),
        app=SimpleNamespace(
            conf=SimpleNamespace(
                table_standby_replicas=0,
                broker_credentials=None,
                ssl_context=None,
                broker_max_poll_interval=1.0,
                broker_request_timeout=90.0,
                broker_session_timeout=60.0,
                broker_rebalance_timeout=60.0,
                consumer_api_version="auto",
                broker_client_id="t",
                id="app",
                consumer_group_instance_id=None,
                consumer_auto_offset_reset="earliest",
                broker_max_poll_records=None,
                consumer_max_fetch_size=1024,
                broker_check_crcs=True,
                broker_heartbeat_interval=3.0,
                consumer_metadata_max_age_ms=1000,
                consumer_connections_max_idle_ms=1000,
            ),
            tables=SimpleNamespace(changelog_topics=set()),
        ),
    )
    transport = SimpleNamespace(url=[URL("kafka://127.0.0.1:9092")], default_port=9092)
    driver.AIOKafkaConsumerThread._create_worker_consumer(thread, transport)
    assert built["isolation_level"] == "read_committed"
    assert driver.aiokafka.AIOKafkaConsumer is Recorder  # put back after the call


class Cluster:
    """aiokafka's ClusterMetadata as far as the fix reads it: topic -> {partition: leader}."""

    def __init__(self, topics: dict[str, dict[int, int]]) -> None:
        self.topics = topics

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(self.topics[topic]) if topic in self.topics else None

    def leader_for_partition(self, tp: Any) -> int | None:
        return self.topics.get(tp.topic, {}).get(tp.partition)


class Client:
    """Answers each metadata request with the next of `answers` (the last one from then on)."""

    def __init__(self, *answers: dict[str, dict[int, int]]) -> None:
        self.answers, self.asked = list(answers), 0

    async def fetch_all_metadata(self) -> Cluster:
        self.asked += 1
        return Cluster(self.answers[min(self.asked, len(self.answers)) - 1])


def test_a_topic_counts_as_listed_only_with_partitions_that_all_have_a_leader() -> None:
    cluster = Cluster({"ready": {0: 1, 1: 1}, "leaderless": {0: 1, 1: -1}, "empty": {}})
    missing = faust_fixes.unlisted(cluster, ["ready", "leaderless", "empty", "absent"])
    assert missing == ["absent", "empty", "leaderless"]


async def test_the_subscription_waits_until_the_broker_lists_a_topic_created_a_moment_ago() -> None:
    # A changelog Faust has just created: not there, then there without leaders, then ready.
    client = Client({"in": {0: 1}}, {"in": {0: 1}, "changelog": {0: -1}}, {"in": {0: 1}, "changelog": {0: 1}})
    assert await faust_fixes.wait_until_listed(client, ["in", "changelog"], timeout_s=5) == []
    assert client.asked == 3


async def test_the_subscription_goes_ahead_after_the_timeout_naming_what_is_missing() -> None:
    client = Client({"in": {0: 1}})
    assert await faust_fixes.wait_until_listed(client, ["in", "changelog"], timeout_s=0.2) == ["changelog"]
