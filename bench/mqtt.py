"""Shop-floor telemetry from MQTT into Kafka, beside the MQTT broker's own limit, on a real
Mosquitto (Debian's package, started here) and the run's Kafka:

- `broker_drain_per_s`: a bare QoS 1 subscriber (aiomqtt, doing nothing with a message) drains
  a persistent session holding `messages` status messages: what Mosquitto hands one client;
- `source_into_kafka_per_s`: the MQTT connector's source (connectors/mqtt/, under the runtime's
  StreamRunner and batched publisher, acks=all) drains the same backlog into the records topic,
  each message acknowledged to the broker only once Kafka holds its record;
- `publish_per_s`: the simulated plant's QoS 1 publishing rate (500 in flight), for scale.

Both drains start from a queued session, so neither waits for a publisher.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.context import RunContext
from connectors.base import ConnectorContext
from connectors.mqtt.config import MqttConfig
from connectors.mqtt.source import MqttSource
from connectors.runtime.batching import BatchedPublisher
from connectors.runtime.kafka import KafkaPublisher
from connectors.runtime.streaming import StreamRunner
from sandbox.demo import free_port
from threadlink.config import Settings
from threadlink.devmqtt import running_mosquitto
from threadlink.topics_admin import apply_topics

#: aiomqtt warns of every publish past 10 pending; 500 in flight is the point here.
QUIET = logging.getLogger("bench.mqtt.publisher")
QUIET.setLevel(logging.ERROR)

MESSAGES = 20_000
IN_FLIGHT = 500
LIMIT_S = 180.0
MAPPING = {
    "topic": "plant/{plant}/line/{line}/order/{order}/status",
    "kind": "production_order",
    "key": "{order}",
    "fields": {"plant": "{plant}", "line": "{line}", "status": "{payload.status}", "updated_at": "{payload.ts}"},
}


def _status(prefix: str, n: int) -> tuple[str, bytes]:
    body = {"status": "running", "ts": "2026-12-03T07:00:00Z"}
    return f"plant/p1/line/l{n % 4}/order/{prefix}-{n}/status", json.dumps(body).encode()


async def _publish(port: int, prefix: str, count: int) -> float:
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=f"bench-plant-{prefix}", protocol=aiomqtt.ProtocolVersion.V5, logger=QUIET
    ) as client:
        started = time.monotonic()
        for start in range(0, count, IN_FLIGHT):
            await asyncio.gather(
                *(
                    client.publish(*_status(prefix, n), qos=1, timeout=60)
                    for n in range(start, min(count, start + IN_FLIGHT))
                )
            )
        return count / (time.monotonic() - started)


def _session(port: int, identifier: str) -> aiomqtt.Client:
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    properties.ReceiveMaximum = 1000
    return aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        properties=properties,
    )


async def _broker_drain(port: int, count: int) -> float:
    async with _session(port, "bench-bare") as client:
        await client.subscribe("plant/#", qos=1)
    await _publish(port, "bare", count)
    async with _session(port, "bench-bare") as client:
        started, got = time.monotonic(), 0
        async for _ in client.messages:
            got += 1
            if got == count:
                break
        took = time.monotonic() - started
        await client.unsubscribe("plant/#")
    return count / took


class _Source:
    def __init__(self, ctx: RunContext, port: int) -> None:
        settings = Settings(kafka={"bootstrap_servers": ctx.bootstrap, "namespace": ctx.namespace("mqtt")})
        apply_topics(settings)
        config = MqttConfig.model_validate(
            {"host": "127.0.0.1", "port": port, "client_id": "bench-source", "mappings": [MAPPING]}
        )
        self.publisher = KafkaPublisher(ctx.bootstrap, client_id=f"{ctx.prefix}-mqtt")
        context = ConnectorContext(name="mes", topics=settings.kafka.topics, publisher=self.publisher.labelled("mes"))
        self.source = MqttSource(config, context)
        self.batched = BatchedPublisher(self.publisher, connector="mes")
        self.runner = StreamRunner("mes", self.source, self.batched)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.runner.run())
        while self.source.subscribed == 0:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(None, self.publisher.close)


async def _source_drain(ctx: RunContext, port: int, count: int) -> dict[str, Any]:
    first = _Source(ctx, port)
    await first.start()  # its persistent session now exists: what comes next waits in it
    await first.stop()
    await _publish(port, "src", count)
    source = _Source(ctx, port)
    started = time.monotonic()
    await source.start()
    try:
        while source.source.received < count or source.batched.in_flight:
            await asyncio.sleep(0.01)
        took = time.monotonic() - started
    finally:
        await source.stop()
    return {"per_s": count / took, "seconds": took, "batches": source.batched.batches_sent}


async def _measure(ctx: RunContext, count: int) -> dict[str, Any]:
    port = free_port(18911)
    with running_mosquitto(port=port, data_dir=Path(tempfile.mkdtemp(dir=ctx.run_dir))):
        async with asyncio.timeout(LIMIT_S):
            publish_rate = await _publish(port, "warm", count)
            broker = await _broker_drain(port, count)
            source = await _source_drain(ctx, port, count)
    return {
        "messages": count,
        "publish_per_s": round(publish_rate),
        "broker_drain_per_s": round(broker),
        "source_into_kafka_per_s": round(source["per_s"]),
        "source_seconds": round(source["seconds"], 2),
        "batches": source["batches"],
        "source_vs_broker": round(source["per_s"] / broker, 3),
    }


def measure(ctx: RunContext, count: int = MESSAGES) -> dict[str, Any]:
    return asyncio.run(_measure(ctx, count))
