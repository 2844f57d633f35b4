"""The OPC UA source's handling of data values, without a server: a good value is a record on the
records topic keyed by its record id, a bad one a dead letter with the reason, and a repeat on
one connection is not published twice. (Against a real server: tests/integration/test_opcua_source.py.)"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.base import ConnectorContext
from connectors.opcua.config import OpcuaConfig
from connectors.opcua.mapping import Reading
from connectors.opcua.source import Bound, OpcuaSource
from schemas.topics import TopicNames
from tests.unit.connectors.recording import RecordingPublisher

pytestmark = pytest.mark.unit

AT = datetime(2026, 12, 3, 7, 0, tzinfo=UTC)
NODE = "ns=2;s=Line1.Press3.State"


class Emitted:
    """The runtime's `emit`, recording what it was given; every delivery completes at once."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []

    async def __call__(self, topic: str, key: str, envelope: Any) -> asyncio.Future[None]:
        self.events.append((topic, key, envelope))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def source() -> OpcuaSource:
    config = OpcuaConfig.model_validate(
        {
            "endpoint": "opc.tcp://127.0.0.1:4840/",
            "mappings": [
                {"node": NODE, "kind": "machine_state", "key": "press-3", "field": "state", "fields": {"line": "L1"}}
            ],
        }
    )
    made = OpcuaSource(config, ConnectorContext("presses", TopicNames(namespace="test"), RecordingPublisher()))
    made._bound = {NODE: [Bound(node=None, node_id=NODE, mapping=config.mappings[0], captures={}, key="press-3")]}  # type: ignore[arg-type]
    return made


def reading(value: Any, *, status: str = "Good") -> Reading:
    return Reading(NODE, value, status, status == "Good", AT, None)


async def test_a_good_value_is_a_record_and_a_bad_one_a_dead_letter_with_the_reason() -> None:
    opcua, emit, failed = source(), Emitted(), asyncio.Event()
    await opcua._handle(emit, reading("down"), failed)
    await opcua._handle(emit, reading(None, status="BadSensorFailure"), failed)
    await opcua._handle(emit, reading(["a"]), failed)
    (record_topic, record_key, record), *letters = emit.events
    assert (record_topic, record_key) == ("test.records", "presses:press-3")
    assert (record.data.state, record.data.line, record.data.version) == ("down", "L1", int(AT.timestamp() * 1000))
    assert [(topic, key) for topic, key, _ in letters] == [("test.deadletter", NODE)] * 2
    assert [letter.data.reason for _, _, letter in letters] == [
        f"{NODE}: the server reports status BadSensorFailure, not Good",
        f"{NODE}: got an array ['a'], expected a text or number",
    ]
    assert not failed.is_set() and opcua.received == 3


async def test_a_repeat_on_one_connection_is_published_once_and_again_after_a_reconnect() -> None:
    opcua, emit, failed = source(), Emitted(), asyncio.Event()
    await opcua._handle(emit, reading("down"), failed)  # read after subscribing
    await opcua._handle(emit, reading("down"), failed)  # the subscription's first notification
    assert len(emit.events) == 1
    opcua._sent = {}  # what run() does on a new connection
    await opcua._handle(emit, reading("down"), failed)
    assert len(emit.events) == 2 and emit.events[0][2].id == emit.events[1][2].id  # the same event again


async def test_an_event_kafka_did_not_take_makes_the_source_reconnect() -> None:
    opcua, failed = source(), asyncio.Event()

    async def refusing(topic: str, key: str, envelope: Any) -> asyncio.Future[None]:
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivery.set_exception(RuntimeError("broker did not acknowledge"))
        delivery.exception()  # retrieved, as the batched publisher does
        return delivery

    await opcua._handle(refusing, reading("down"), failed)
    await asyncio.sleep(0)  # done callbacks run on the next loop turn
    assert failed.is_set()  # run() then raises ConnectionLost: reconnect, read every node again


async def test_a_first_notification_older_than_the_value_read_after_it_is_not_published() -> None:
    """Subscribed, then a change (read after subscribing), then the subscription's first
    notification with the value of when it was created: the stale one is dropped, so the
    records topic never goes back to an older state (seen once in CI: maintenance after running-again)."""
    opcua, emit, failed = source(), Emitted(), asyncio.Event()
    await opcua._handle(emit, Reading(NODE, "running-again", "Good", True, AT, None), failed)  # read
    stale = Reading(NODE, "maintenance", "Good", True, AT - timedelta(seconds=5), None)  # the first notification
    await opcua._handle(emit, stale, failed)
    await opcua._handle(emit, Reading(NODE, "down", "Good", True, AT + timedelta(seconds=1), None), failed)
    assert [envelope.data.state for _, _, envelope in emit.events] == ["running-again", "down"]
