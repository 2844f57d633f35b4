"""The two faust-streaming fixes threadlink carries (streams/faust_fixes.py), each checked where it
acts: the seek after recovery hands out nothing while it moves the offsets, and the worker's
consumer reads committed records only. The end-to-end proof of the first is
tests/integration/test_streams_restart.py."""

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


def test_install_is_idempotent_and_patches_the_consumer() -> None:
    faust_fixes.install()
    seek, getmany = Consumer.perform_seek, Consumer.getmany
    faust_fixes.install()
    assert (Consumer.perform_seek, Consumer.getmany) == (seek, getmany)
    assert seek.__module__ == faust_fixes.__name__


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
