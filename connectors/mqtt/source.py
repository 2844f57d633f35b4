"""The MQTT stream source: QoS 1 subscriptions in a persistent session, each message acknowledged
(PUBACK) only once Kafka has what it became.

Why nothing is lost across a restart: the client connects with clean start off, a session
expiry and a client id that stays the same per replica, so the broker keeps the session while
threadlink is away and queues what arrives (QoS 1) for it; on the next connect it sends those,
and resends every message that was sent but not acknowledged. Acknowledging only after the
broker's acks=all means a crash at any moment leaves the message with the MQTT broker.

Why N replicas do not publish a message N times: every replica subscribes as a member of one
MQTT 5 shared subscription (`$share/<group>/<filter>`), and the broker hands each message to one
member. (Mosquitto also queues a share for a member that is offline with a live session: those
messages arrive when that replica returns, not before; docs/connectors/mqtt.md.)

Manual acknowledgements: aiomqtt 2.5 has no API for them yet (empicano/aiomqtt#345); its paho
client does (`manual_ack_set`, `ack`), which is the workaround aiomqtt's maintainers point to.
It is set before connecting, so not even the first queued message is acknowledged early.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
from collections import deque
from datetime import UTC, datetime
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from connectors.base import ConnectionLost, ConnectorContext, Emit, StreamSource
from connectors.mqtt.config import MqttConfig
from connectors.mqtt.mapping import MappingFailed, record_from_message
from connectors.runtime.deadletter import dead_letter_envelope
from connectors.runtime.kafka import EventTooLarge
from connectors.runtime.metrics import DEAD_LETTERS
from connectors.runtime.shopfloor import source_dead_letter
from schemas import events
from schemas.deadletters import DeadLetter
from schemas.envelope import Envelope
from schemas.records import RecordEvent

log = logging.getLogger(__name__)

#: `DeadLetter.topic` of what came over MQTT: not a Kafka topic, so `dlq replay` skips it.
DEAD_LETTER_TOPIC_PREFIX = "mqtt:"
CONNECT_TIMEOUT_S = 10.0


class _Acknowledgements:
    """PUBACKs in the order the messages arrived (MQTT 5 §4.6), each once its event is durable.
    After a failed delivery nothing more is acknowledged on this connection: the source
    reconnects and the broker resends all of it."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self._paho = client._client  # aiomqtt has no manual-ack API yet (see the module doc)
        self._waiting: deque[tuple[asyncio.Future[None], int, int]] = deque()
        self.failed = asyncio.Event()
        self.acknowledged = 0

    def add(self, delivery: asyncio.Future[None], mid: int, qos: int) -> None:
        self._waiting.append((delivery, mid, qos))
        delivery.add_done_callback(self._release)

    def _release(self, _: Any = None) -> None:
        while self._waiting and self._waiting[0][0].done() and not self.failed.is_set():
            delivery, mid, qos = self._waiting.popleft()
            if delivery.cancelled() or delivery.exception() is not None:
                self.failed.set()
                self._waiting.clear()
                return
            if qos > 0:
                self._paho.ack(mid, qos)
            self.acknowledged += 1


class MqttSource(StreamSource):
    """Subscribes to every mapping's topic filter and emits a record (or a dead letter) per message."""

    name = "mqtt"

    def __init__(self, config: MqttConfig, ctx: ConnectorContext) -> None:
        self.config = config
        self.ctx = ctx
        self.client_id = config.client_id_for(ctx.name)
        self.consumer = f"mqtt.{ctx.name}"
        self._client: aiomqtt.Client | None = None
        self.received = 0
        """Messages handed over by the broker, over every connection (the bench and tests read it)."""
        self.subscribed = 0
        """Connections whose subscriptions the broker granted."""

    # -- lifecycle ------------------------------------------------------------------------------

    async def connect(self) -> None:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.config.session_expiry_s
        properties.ReceiveMaximum = self.config.receive_maximum
        password = self.config.password.get_secret_value() if self.config.password else None
        client = aiomqtt.Client(
            self.config.host,
            self.config.port,
            identifier=self.client_id,
            username=self.config.username,
            password=password,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,  # resume the session: what was queued while away comes now
            properties=properties,
            keepalive=self.config.keepalive_s,
            timeout=CONNECT_TIMEOUT_S,
            tls_context=self._tls_context(),
        )
        client._client.manual_ack_set(True)  # before connecting: see the module doc
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise ConnectionLost(f"cannot connect to {self.config.host}:{self.config.port}: {exc}") from None
        self._client = client

    async def run(self, emit: Emit) -> None:
        client = self._client
        if client is None:
            raise ConnectionLost("not connected")
        acks = _Acknowledgements(client)
        await self._subscribe(client)
        consumer = asyncio.ensure_future(self._consume(client, emit, acks))
        failure = asyncio.ensure_future(acks.failed.wait())
        try:
            await asyncio.wait({consumer, failure}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            failure.cancel()
            if not consumer.done():
                consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer  # re-raises what ended it (ConnectionLost)
        if acks.failed.is_set():
            raise ConnectionLost("Kafka did not take an event: reconnecting, so the broker sends it again")

    async def disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)

    # -- internals ------------------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext | None:
        if not self.config.tls:
            return None
        return ssl.create_default_context(cafile=self.config.ca_file)

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        filters = self.config.subscriptions()
        try:
            granted = await client.subscribe([(f, SubscribeOptions(qos=1)) for f in filters])
        except aiomqtt.MqttError as exc:
            raise ConnectionLost(f"subscribing failed: {exc}") from None
        for topic_filter, code in zip(filters, granted, strict=False):
            value = getattr(code, "value", code)
            if isinstance(value, int) and value >= 0x80:
                # Refused (not authorised, shared subscriptions unsupported): retried with backoff,
                # which will not help until the broker's ACL or the config changes; say so.
                raise ConnectionLost(f"the broker refused the subscription {topic_filter!r} ({code})")
            if value == 0:
                log.warning("mqtt %s: %r granted at QoS 0 only: messages may be lost", self.ctx.name, topic_filter)
        self.subscribed += 1
        log.info("mqtt %s: subscribed as %s to %s", self.ctx.name, self.client_id, ", ".join(filters))

    async def _consume(self, client: aiomqtt.Client, emit: Emit, acks: _Acknowledgements) -> None:
        try:
            async for message in client.messages:
                self.received += 1
                delivery = await self._emit(emit, message)
                acks.add(delivery, message.mid, message.qos)
        except aiomqtt.MqttError as exc:
            raise ConnectionLost(f"the connection ended: {exc}") from None

    async def _emit(self, emit: Emit, message: aiomqtt.Message) -> asyncio.Future[None]:
        topic = message.topic.value
        payload = _payload_bytes(message.payload)
        received_at = datetime.now(UTC)
        if len(payload) > self.config.max_payload_bytes:
            reason = f"the payload is {len(payload)} bytes, over max_payload_bytes ({self.config.max_payload_bytes})"
            return await self._dead_letter(emit, topic, payload, reason)
        try:
            envelope = self._record_envelope(topic, payload, received_at)
        except MappingFailed as exc:
            return await self._dead_letter(emit, topic, payload, str(exc))
        try:
            return await emit(self.ctx.topics.records, envelope.data.ref.id, envelope)
        except EventTooLarge as exc:
            return await self._dead_letter(emit, topic, payload, str(exc))

    def _record_envelope(self, topic: str, payload: bytes, received_at: datetime) -> Envelope[RecordEvent]:
        for mapping in self.config.mappings:
            record = record_from_message(
                mapping, system=self.ctx.name, topic=topic, payload=payload, received_at=received_at
            )
            if record is not None:
                # The same message redelivered gets the same id: recognisable downstream.
                digest = hashlib.sha256(topic.encode() + b"\0" + payload).hexdigest()[:32]
                return Envelope[RecordEvent].wrap(
                    record,
                    type=events.RECORD_UPSERTED.format(kind=record.kind),
                    source_system=self.ctx.name,
                    subject=record.ref.id,
                    id=f"{self.ctx.name}:{digest}",
                    occurred_at=record.updated_at,
                    received_at=received_at,
                    visibility=record.visibility,
                )
        raise MappingFailed(f"no mapping's topic pattern matches {topic!r}")

    async def _dead_letter(self, emit: Emit, topic: str, payload: bytes, reason: str) -> asyncio.Future[None]:
        log.warning("mqtt %s: dead-lettered a message on %s: %s", self.ctx.name, topic, reason)
        letter = mqtt_dead_letter(self.ctx.name, topic, payload[: self.config.max_payload_bytes], reason)
        delivery = await emit(self.ctx.topics.dead_letters, topic, dead_letter_envelope(letter))
        DEAD_LETTERS.labels(self.consumer, letter.error_kind).inc()
        return delivery


def _payload_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()


def mqtt_dead_letter(connector: str, topic: str, payload: bytes, reason: str) -> DeadLetter:
    """A message that cannot become a record: its topic as the key, its payload as the value."""
    return source_dead_letter(
        topic=f"{DEAD_LETTER_TOPIC_PREFIX}{connector}",
        key=topic,
        payload=payload,
        reason=reason,
        consumer=f"mqtt.{connector}",
    )
