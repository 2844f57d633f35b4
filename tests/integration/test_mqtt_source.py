"""The MQTT source against a real Mosquitto (Debian's package, persistence on) and the real Kafka:
status messages become records, malformed ones dead letters with the reason, a persistent
session keeps what was published while the connector was stopped (across a broker restart too),
and two replicas in one shared subscription publish each message once."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiomqtt
import pytest

from connectors.base import ConnectorContext
from connectors.mqtt.config import MqttConfig
from connectors.mqtt.source import MqttSource
from connectors.runtime.batching import BatchedPublisher
from connectors.runtime.kafka import KafkaPublisher
from connectors.runtime.streaming import StreamRunner
from schemas.deadletters import DeadLetter
from schemas.records import RecordEvent
from schemas.topics import TopicNames
from tests.integration.kafka_helpers import TopicTail
from threadlink.config import Settings
from threadlink.devmqtt import Mosquitto, running_mosquitto
from threadlink.topics_admin import apply_topics

pytestmark = pytest.mark.integration

MQTT_PORT = 18801
"""In this worktree's port range; one Mosquitto per module."""

MAPPINGS = [
    {
        "topic": "plant/{plant}/line/{line}/order/{order}/status",
        "kind": "production_order",
        "key": "{order}",
        "fields": {
            "plant": "{plant}",
            "line": "{line}",
            "status": "{payload.status}",
            "quantity": "{payload.done?}",
            "updated_at": "{payload.ts}",
        },
    },
    {
        "topic": "spBv1.0/{group}/DDATA/{node}/{device}",
        "kind": "machine_state",
        "key": "{node}-{device}",
        "fields": {"machine": "{device}", "state": "{payload.metrics[name=State].value}"},
    },
]


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    with running_mosquitto(port=MQTT_PORT, data_dir=tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker


@pytest.fixture
def topics(kafka_bootstrap: str, namespace: str, request: pytest.FixtureRequest) -> TopicNames:
    settings = Settings(
        kafka={"bootstrap_servers": kafka_bootstrap, "namespace": f"{namespace}-mqtt-{request.node.name[:40]}"}
    )
    apply_topics(settings)
    return settings.kafka.topics


class Replica:
    """One connector replica: the MQTT source under the runtime's StreamRunner and batched publisher."""

    def __init__(self, kafka_bootstrap: str, topics: TopicNames, client_id: str, **config: Any) -> None:
        # A share group of its own unless told: Mosquitto hands a share to members that are offline
        # with a live session too, so replicas of earlier tests would take messages of this one.
        config = {"shared_group": f"group-{client_id}", **config}
        self.config = MqttConfig.model_validate(
            {"host": "127.0.0.1", "port": MQTT_PORT, "client_id": client_id, "mappings": MAPPINGS, **config}
        )
        self.publisher = KafkaPublisher(kafka_bootstrap, client_id=f"tests-{client_id}")
        context = ConnectorContext(name="mes", topics=topics, publisher=self.publisher.labelled("mes"))
        self.source = MqttSource(self.config, context)
        self.source.reconnect_initial_s = 0.1
        self.batched = BatchedPublisher(self.publisher, connector="mes", linger_s=0.01, batch_size=200)
        self.runner = StreamRunner("mes", self.source, self.batched)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.runner.run())
        await until(lambda: self.source.subscribed > 0, what=f"{self.source.client_id} subscribed")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
        await asyncio.get_running_loop().run_in_executor(None, self.publisher.close)


@pytest.fixture
async def replicas(kafka_bootstrap: str, topics: TopicNames) -> AsyncIterator[list[Replica]]:
    made: list[Replica] = []
    yield made
    for replica in made:
        await replica.stop()


async def until(predicate: Any, *, what: str, timeout_s: float = 60) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.05)


async def publish(messages: list[tuple[str, bytes]]) -> None:
    """QoS 1, each acknowledged by the broker before the publisher disconnects."""
    async with aiomqtt.Client(
        "127.0.0.1", MQTT_PORT, identifier="plant-simulator", protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


def status(order: str, state: str, *, line: str = "l3", **extra: Any) -> tuple[str, bytes]:
    body = {"status": state, "ts": "2026-12-03T07:00:00Z", **extra}
    return f"plant/p1/line/{line}/order/{order}/status", json.dumps(body).encode()


async def read_until(tail: TopicTail, count: int, *, what: str) -> list[Any]:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(90):
        while len(seen := await loop.run_in_executor(None, tail.read)) < count:
            await asyncio.sleep(0.2)
    return seen


async def test_status_messages_become_records_with_the_mapped_fields(
    mosquitto: Mosquitto, kafka_bootstrap: str, topics: TopicNames, replicas: list[Replica]
) -> None:
    replica = Replica(kafka_bootstrap, topics, "mes-fields")
    replicas.append(replica)
    await replica.start()
    sparkplug = {
        "timestamp": 1764745200000,
        "metrics": [{"name": "Temp", "value": 81}, {"name": "State", "value": "down"}],
    }
    await publish(
        [
            status("PO-4711", "running", done="120/500 pcs"),
            status("PO-4711", "delayed", line="l4"),
            ("spBv1.0/press/DDATA/edge-1/press-7", json.dumps(sparkplug).encode()),
        ]
    )
    tail = TopicTail(kafka_bootstrap, topics.records, RecordEvent)
    try:
        records = [e.data for e in await read_until(tail, 3, what="three records")]
    finally:
        tail.close()
    orders = [r for r in records if r.kind == "production_order"]
    assert [(r.ref.id, r.plant, r.line, r.status) for r in orders] == [
        ("mes:PO-4711", "p1", "l3", "running"),
        ("mes:PO-4711", "p1", "l4", "delayed"),
    ]
    assert orders[0].quantity == "120/500 pcs" and orders[1].quantity is None
    assert orders[0].field_value("status") == "running"  # what the card shows
    (machine,) = [r for r in records if r.kind == "machine_state"]
    assert (machine.ref.id, machine.machine, machine.state) == ("mes:edge-1-press-7", "press-7", "down")


async def test_malformed_payloads_become_dead_letters_with_the_reason(
    mosquitto: Mosquitto, kafka_bootstrap: str, topics: TopicNames, replicas: list[Replica]
) -> None:
    replica = Replica(kafka_bootstrap, topics, "mes-malformed", max_payload_bytes=1024)
    replicas.append(replica)
    await replica.start()
    order_topic = "plant/p1/line/l3/order/PO-9/status"
    await publish(
        [
            (order_topic, b'{"status": "delayed", "ts": '),  # cut off
            (order_topic, b'{"ts": "2026-12-03T07:00:00Z"}'),  # no status
            (order_topic, b'{"status": ["a"], "ts": "2026-12-03T07:00:00Z"}'),  # wrong type
            (order_topic, json.dumps({"status": "x" * 2000, "ts": 1}).encode()),  # oversized
            ("spBv1.0/g/DDATA/n/d", b"\xff\xfe not utf-8"),
            status("PO-9", "done"),  # and the source goes on
        ]
    )
    letters_tail = TopicTail(kafka_bootstrap, topics.dead_letters, DeadLetter)
    records_tail = TopicTail(kafka_bootstrap, topics.records, RecordEvent)
    try:
        letters = [e.data for e in await read_until(letters_tail, 5, what="five dead letters")]
        (record,) = [e.data for e in await read_until(records_tail, 1, what="the good record")]
    finally:
        letters_tail.close()
        records_tail.close()
    reasons = [letter.reason for letter in letters]
    assert "is not JSON" in reasons[0]
    assert reasons[1] == "fields.status: the payload has no payload.status"
    assert reasons[2] == "fields.status: got a list, expected a text or number"
    assert reasons[3].startswith("the payload is 2") and "over max_payload_bytes (1024)" in reasons[3]
    assert "is not JSON" in reasons[4] and letters[4].value_encoding == "base64"
    assert all(letter.key == order_topic for letter in letters[:4]) and letters[4].key == "spBv1.0/g/DDATA/n/d"
    assert letters[0].original_value() == b'{"status": "delayed", "ts": '
    assert len(letters[3].original_value()) == 1024  # the oversized payload is cut to the limit
    assert {letter.topic for letter in letters} == {"mqtt:mes"} and letters[0].consumer == "mqtt.mes"
    assert (record.ref.key, record.status) == ("PO-9", "done")
    assert replica.runner.connections == 1  # never a crash: one connection throughout


async def test_what_is_published_while_the_connector_is_stopped_arrives_after_it_restarts(
    mosquitto: Mosquitto, kafka_bootstrap: str, topics: TopicNames, replicas: list[Replica]
) -> None:
    first = Replica(kafka_bootstrap, topics, "mes-session")  # in its share group, as by default
    await first.start()  # the broker now holds the session and its subscriptions
    await first.stop()
    await publish([status(f"PO-{n}", "queued") for n in range(200)])
    second = Replica(kafka_bootstrap, topics, "mes-session")
    replicas.append(second)
    await second.start()
    records = await read_records(kafka_bootstrap, topics, 200)
    assert sorted(r.ref.key for r in records) == sorted(f"PO-{n}" for n in range(200))
    assert second.source.received == 200


async def test_a_session_survives_a_broker_restart_while_the_connector_is_stopped(
    mosquitto: Mosquitto, kafka_bootstrap: str, topics: TopicNames, replicas: list[Replica]
) -> None:
    # Plain subscriptions: Mosquitto 2.0.11 does not restore the *shared* subscriptions of an
    # offline session from its persistence file (docs/connectors/mqtt.md), plain ones it does.
    first = Replica(kafka_bootstrap, topics, "mes-broker-restart", shared_group=None)
    await first.start()
    await first.stop()
    await publish([status(f"PO-{n}", "queued") for n in range(100)])
    mosquitto.restart()  # what was queued survives in the broker's persistence file...
    await publish([status(f"PO-{n}", "queued") for n in range(100, 150)])  # ...and so does the session
    second = Replica(kafka_bootstrap, topics, "mes-broker-restart", shared_group=None)
    replicas.append(second)
    await second.start()
    records = await read_records(kafka_bootstrap, topics, 150)
    assert sorted(r.ref.key for r in records) == sorted(f"PO-{n}" for n in range(150))


async def read_records(kafka_bootstrap: str, topics: TopicNames, count: int) -> list[Any]:
    tail = TopicTail(kafka_bootstrap, topics.records, RecordEvent)
    try:
        return [e.data for e in await read_until(tail, count, what=f"{count} records")]
    finally:
        tail.close()


async def test_two_replicas_in_a_shared_subscription_publish_each_message_once(
    mosquitto: Mosquitto, kafka_bootstrap: str, topics: TopicNames, replicas: list[Replica]
) -> None:
    pair = [Replica(kafka_bootstrap, topics, f"mes-replica-{n}", shared_group="mes-test") for n in range(2)]
    replicas.extend(pair)
    for replica in pair:
        await replica.start()
    await publish([status(f"PO-{n}", "running") for n in range(400)])
    tail = TopicTail(kafka_bootstrap, topics.records, RecordEvent)
    try:
        await read_until(tail, 400, what="400 records")
        await asyncio.sleep(1.0)  # a duplicate would come right behind
        envelopes = await asyncio.get_running_loop().run_in_executor(None, tail.read)
    finally:
        tail.close()
    assert len(envelopes) == 400
    assert Counter(e.data.ref.key for e in envelopes) == Counter(f"PO-{n}" for n in range(400))
    received = [replica.source.received for replica in pair]
    assert sum(received) == 400 and min(received) > 0  # both worked, neither saw the other's share
