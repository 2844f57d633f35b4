"""The OPC UA stream source: one subscription with a data-change monitored item per mapped node;
each change becomes the node's record (all that record's nodes' latest values) on the records
topic.

Why nothing the server still holds is lost: OPC UA acknowledges notifications itself (the
Publish requests asyncua sends), so it cannot wait for Kafka the way MQTT's PUBACK does, and a
subscription does not outlive a server restart. What it can do: on every connection, after
subscribing, the source reads the current value of every node and publishes it. After a lost
connection, a server restart, or an event Kafka did not take (the source then reconnects on
purpose), the latest value of each node is published again. Changes that came and went while
the connection was down are not seen (a variable holds one value); that is the guarantee:
the latest state, not every intermediate one.

Why a repeat is harmless: a record's version is its nodes' newest source timestamp (epoch ms),
and its event id is a hash of the record, so the same value read again, or published by a
second replica, is the same event with the same id and version; record state downstream only
moves forward by version, and a card is not updated for what it already shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asyncua import Client, Node, ua
from asyncua.common.subscription import DataChangeEvent, OverflowPolicy, StatusChangeEvent, Subscription

from connectors.base import ConnectionLost, ConnectorContext, Emit, StreamSource
from connectors.opcua.config import OpcuaConfig, OpcuaMapping
from connectors.opcua.mapping import MappingFailed, NodePath, Reading, RecordState, field_value
from connectors.runtime.deadletter import dead_letter_envelope
from connectors.runtime.kafka import EventTooLarge
from connectors.runtime.metrics import DEAD_LETTERS
from connectors.runtime.shopfloor import source_dead_letter
from schemas import events
from schemas.deadletters import DeadLetter
from schemas.envelope import Envelope

log = logging.getLogger(__name__)

#: `DeadLetter.topic` of what came over OPC UA: not a Kafka topic, so `dlq replay` skips it.
DEAD_LETTER_TOPIC_PREFIX = "opcua:"
#: How often `run` looks at the connection and the deliveries between notifications.
POLL_S = 0.2
#: What a server answers to a user name or password it does not accept (or to an anonymous session).
IDENTITY_REFUSED = frozenset(
    {
        ua.StatusCodes.BadUserAccessDenied,
        ua.StatusCodes.BadIdentityTokenRejected,
        ua.StatusCodes.BadIdentityTokenInvalid,
    }
)
#: Nodes read in one Read request after subscribing.
READ_CHUNK = 500


@dataclass(frozen=True)
class Bound:
    """One resolved node and the mapping (and captures) it was resolved for."""

    node: Node
    node_id: str
    mapping: OpcuaMapping
    captures: dict[str, str]
    key: str


class OpcuaSource(StreamSource):
    """Subscribes to every mapped node and emits a record (or a dead letter) per change."""

    name = "opcua"

    def __init__(self, config: OpcuaConfig, ctx: ConnectorContext) -> None:
        self.config = config
        self.ctx = ctx
        self.consumer = f"opcua.{ctx.name}"
        self._client: Client | None = None
        self._lost = asyncio.Event()
        self._bound: dict[str, list[Bound]] = {}
        self._records: dict[tuple[str, str], RecordState] = {}
        self._sent: dict[str, str] = {}
        """Record id -> event id last published on this connection: the subscription's first
        notification of a node repeats the value just read, and is not published twice."""
        self._newest: dict[str, datetime] = {}
        """Node id -> source timestamp of the newest value handled on this connection: the
        subscription's first notification carries the value of when it was created, which may
        be older than what was read after it (a change in between); that one is not published."""
        self.received = 0
        """Data values handed over (notifications and reads), over every connection."""
        self.subscribed = 0
        """Connections whose subscription the server created."""
        self.identity_refused = 0
        """Connection attempts the server refused for the user name, password or anonymity."""

    # -- lifecycle ------------------------------------------------------------------------------

    async def connect(self) -> None:
        client = Client(
            self.config.endpoint,
            timeout=self.config.request_timeout_s,
            watchdog_intervall=self.config.watchdog_interval_s,
        )
        # A session the server keeps for a client that is gone (a killed replica) lasts this long.
        client.session_timeout = int(self.config.session_timeout_s * 1000)
        if self.config.username:
            client.set_user(self.config.username)
        if self.config.password:
            client.set_password(self.config.password.get_secret_value())
        self._lost = asyncio.Event()
        lost = self._lost

        async def on_lost(exc: Exception) -> None:
            log.info("opcua %s: connection lost (%r)", self.ctx.name, exc)
            lost.set()

        client.connection_lost_callback = on_lost
        try:
            await client.connect(auto_reconnect=False)  # the runtime reconnects, with its backoff
        except (TimeoutError, OSError, ua.UaError) as exc:
            with contextlib.suppress(Exception):
                await client.disconnect()
            if isinstance(exc, ua.UaStatusCodeError) and exc.code in IDENTITY_REFUSED:
                # Retried with backoff like any connection failure (a server's user list may be
                # fixed meanwhile), but said plainly: retrying alone will not help.
                self.identity_refused += 1
                raise ConnectionLost(
                    f"{self.config.endpoint} refused the session's identity ({type(exc).__name__}): check "
                    f"username and password (THREADLINK_CONNECTORS__{self.ctx.name.upper()}__PASSWORD), "
                    "or leave both out if the server allows anonymous sessions"
                ) from None
            raise ConnectionLost(f"cannot connect to {self.config.endpoint}: {exc!r}") from None
        self._client = client

    async def run(self, emit: Emit) -> None:
        client = self._client
        if client is None:
            raise ConnectionLost("not connected")
        failed = asyncio.Event()
        self._sent, self._newest = {}, {}  # a new connection publishes every record again
        try:
            bound = await self._resolve(client)
            subscription = await client.create_subscription(
                ua.CreateSubscriptionParameters(
                    RequestedPublishingInterval=self.config.publishing_interval_ms,
                    RequestedLifetimeCount=10_000,
                    RequestedMaxKeepAliveCount=10,
                    PublishingEnabled=True,
                ),
                queue_maxsize=self.config.queue_size,
                overflow=OverflowPolicy.DROP_OLDEST,
            )
            subscription.__aiter__()  # the event queue exists before the first notification
            await self._subscribe(subscription, bound)
            # The current values, read after subscribing: a change between the two arrives as a
            # notification too; one before is in what is read. Either way the latest is published.
            for reading in await self._read(client, bound):
                await self._handle(emit, reading, failed)
            await self._consume(subscription, emit, failed)
        except (TimeoutError, OSError, ua.UaError) as exc:
            raise ConnectionLost(f"the connection ended: {exc!r}") from None

    async def disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.config.request_timeout_s):
                    await client.disconnect()

    # -- internals ------------------------------------------------------------------------------

    async def _resolve(self, client: Client) -> dict[str, list[Bound]]:
        """Every mapping's nodes: node ids as they are, browse paths walked from Root (a capture
        level lists the children). A literal path that does not resolve is retried with backoff:
        the server may be starting, or the plant's address space changing."""
        bound: dict[str, list[Bound]] = {}
        count = 0
        for index, mapping in enumerate(self.config.mappings):
            path = mapping.path
            if path.node_id is not None:
                found: list[tuple[Node, dict[str, str]]] = [(client.get_node(path.node_id), {})]
            else:
                found = await self._walk(client, path, index)
            if not found:
                log.warning("opcua %s: mappings.%d (%s) matches no node", self.ctx.name, index, mapping.node)
            for node, captures in found:
                count += 1
                if count > self.config.max_nodes:
                    raise ConnectionLost(
                        f"the mappings resolve to more than max_nodes ({self.config.max_nodes}) nodes: "
                        "narrow the browse path patterns or raise max_nodes"
                    )
                node_id = node.nodeid.to_string()
                key = mapping.key_template.render(captures)
                bound.setdefault(node_id, []).append(Bound(node, node_id, mapping, captures, key))
        self._bound = bound
        return bound

    async def _walk(self, client: Client, path: NodePath, index: int) -> list[tuple[Node, dict[str, str]]]:
        current: list[tuple[Node, dict[str, str]]] = [(client.nodes.root, {})]
        for depth, level in enumerate(path.levels):
            following: list[tuple[Node, dict[str, str]]] = []
            for node, captures in current:
                if level.capture is None:
                    try:
                        child = await node.get_child(f"{level.namespace}:{level.name}")
                    except ua.UaStatusCodeError:
                        if not path.names:  # a literal path: it must be there
                            walked = "/".join(lv.text() for lv in path.levels[: depth + 1])
                            raise ConnectionLost(f"mappings.{index}: the server has no node at {walked}") from None
                        continue
                    following.append((child, captures))
                    continue
                for child in await node.get_children():
                    name = await child.read_browse_name()
                    if name.NamespaceIndex == level.namespace:
                        following.append((child, {**captures, level.capture: name.Name}))
                if len(following) > self.config.max_nodes:
                    break
            current = following
        return current

    async def _subscribe(self, subscription: Subscription, bound: dict[str, list[Bound]]) -> None:
        nodes = [entries[0].node for entries in bound.values()]
        if not nodes:
            raise ConnectionLost("no mapped node exists on the server")
        handles = await subscription.subscribe_data_change(
            nodes, sampling_interval=ua.Double(self.config.sampling_interval_ms), queuesize=10
        )
        refused = [(n, h) for n, h in zip(nodes, handles, strict=True) if isinstance(h, ua.StatusCode)]
        for node, code in refused:
            log.warning("opcua %s: the server refused to monitor %s (%s)", self.ctx.name, node.nodeid, code.name)
        if len(refused) == len(nodes):
            raise ConnectionLost("the server refused to monitor every mapped node")
        self.subscribed += 1
        log.info("opcua %s: subscribed to %d nodes", self.ctx.name, len(nodes) - len(refused))

    async def _read(self, client: Client, bound: dict[str, list[Bound]]) -> list[Reading]:
        readings: list[Reading] = []
        entries = [items[0] for items in bound.values()]
        for start in range(0, len(entries), READ_CHUNK):
            chunk = entries[start : start + READ_CHUNK]
            parameters = ua.ReadParameters(
                TimestampsToReturn=ua.TimestampsToReturn.Both,
                NodesToRead=[ua.ReadValueId(NodeId=e.node.nodeid, AttributeId=ua.AttributeIds.Value) for e in chunk],
            )
            values = await client.uaclient.read(parameters)
            readings.extend(reading_of(e.node_id, value) for e, value in zip(chunk, values, strict=True))
        return readings

    async def _consume(self, subscription: Subscription, emit: Emit, failed: asyncio.Event) -> None:
        while True:
            if self._lost.is_set():
                raise ConnectionLost("the server stopped answering")
            if failed.is_set():
                raise ConnectionLost("Kafka did not take an event: reconnecting, which reads every node again")
            try:
                event = await subscription.next_event(timeout=POLL_S)
            except StopAsyncIteration:
                raise ConnectionLost("the subscription was closed") from None
            if isinstance(event, DataChangeEvent):
                await self._handle(
                    emit, reading_of(event.node.nodeid.to_string(), event.data.monitored_item.Value), failed
                )
            elif isinstance(event, StatusChangeEvent):
                status = event.notification.Status
                if not status.is_good():
                    raise ConnectionLost(f"the subscription ended ({status.name})")

    async def _handle(self, emit: Emit, reading: Reading, failed: asyncio.Event) -> None:
        self.received += 1
        moment = reading.moment
        if moment is not None:
            newest = self._newest.get(reading.node_id)
            if newest is not None and moment < newest:
                return  # older than a value of this node already handled: stale
            self._newest[reading.node_id] = moment
        for entry in self._bound.get(reading.node_id, []):
            delivery = await self._emit(emit, entry, reading)
            delivery.add_done_callback(lambda d: failed.set() if d.cancelled() or d.exception() else None)

    async def _emit(self, emit: Emit, entry: Bound, reading: Reading) -> asyncio.Future[None]:
        mapping = entry.mapping
        try:
            value = field_value(mapping, reading)
        except MappingFailed as exc:
            return await self._dead_letter(emit, reading, str(exc))
        moment = reading.moment or datetime.now(UTC)
        state = self._records.get((mapping.kind, entry.key))
        if state is None:
            state = self._records[(mapping.kind, entry.key)] = RecordState(mapping, entry.key, dict(entry.captures))
        state.apply(mapping, entry.captures, value, moment)
        try:
            record = state.record(self.ctx.name)
        except MappingFailed as exc:
            return await self._dead_letter(emit, reading, str(exc))
        # The same record again (read after a reconnect, or from a second replica) gets the same id.
        digest = hashlib.sha256(record.model_dump_json().encode()).hexdigest()[:32]
        if self._sent.get(record.ref.id) == digest:
            return _settled()
        self._sent[record.ref.id] = digest
        envelope = Envelope[Any].wrap(
            record,
            type=events.RECORD_UPSERTED.format(kind=record.kind),
            source_system=self.ctx.name,
            subject=record.ref.id,
            id=f"{self.ctx.name}:{digest}",
            occurred_at=record.updated_at,
            received_at=datetime.now(UTC),
            visibility=record.visibility,
        )
        try:
            return await emit(self.ctx.topics.records, record.ref.id, envelope)
        except EventTooLarge as exc:
            return await self._dead_letter(emit, reading, str(exc))

    async def _dead_letter(self, emit: Emit, reading: Reading, reason: str) -> asyncio.Future[None]:
        log.warning("opcua %s: dead-lettered a value of %s: %s", self.ctx.name, reading.node_id, reason)
        letter = opcua_dead_letter(self.ctx.name, reading, reason)
        delivery = await emit(self.ctx.topics.dead_letters, reading.node_id, dead_letter_envelope(letter))
        DEAD_LETTERS.labels(self.consumer, letter.error_kind).inc()
        return delivery


def _settled() -> asyncio.Future[None]:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


def reading_of(node_id: str, value: ua.DataValue) -> Reading:
    status = value.StatusCode or ua.StatusCode()
    variant = value.Value
    return Reading(
        node_id=node_id,
        value=variant.Value if variant is not None else None,
        status="Good" if status.is_good() else status.name,
        good=status.is_good(),
        source_timestamp=_utc(value.SourceTimestamp),
        server_timestamp=_utc(value.ServerTimestamp),
    )


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def opcua_dead_letter(connector: str, reading: Reading, reason: str) -> DeadLetter:
    """A value that cannot become a record: the node id as the key, the data value as JSON."""
    value = json.dumps(
        {
            "node": reading.node_id,
            "value": _jsonable(reading.value),
            "status": reading.status,
            "source_timestamp": reading.source_timestamp.isoformat() if reading.source_timestamp else None,
        }
    )
    return source_dead_letter(
        topic=f"{DEAD_LETTER_TOPIC_PREFIX}{connector}",
        key=reading.node_id,
        payload=value.encode()[:65_536],
        reason=reason,
        consumer=f"opcua.{connector}",
    )


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value[:100]]
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value)[:1000]
