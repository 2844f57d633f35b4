"""What a connector is, and what the runtime promises it.

A connector is a folder under connectors/ with a `config.py` (a pydantic model), and a
`connector.py` exposing `PLUGIN`, a `ConnectorPlugin` whose `build()` returns the parts:

- `WebhookSource`s: the platform pushes events to us over HTTP (Slack, Jira, a Matrix
  application service). The runtime serves their routes, reads and verifies the raw body,
  and maps every failure to the right HTTP answer.
- `PollingSource`s: we ask the platform for changes on an interval, from a cursor the runtime
  checkpoints in Kafka, on exactly one replica at a time.
- `StreamSource`s: a long-lived client (MQTT, OPC UA) that holds a connection open and emits
  events as they come, through a batched publisher with backpressure.
- one `Sink` (optional): carries out commands from `<namespace>.commands.<connector name>`.

Registering it is one line in connectors/registry.py. A connector writes only the part that
knows its platform: verify and map (webhooks), fetch and map (pollers), subscribe and map
(streams), call the API (sinks). Kafka, retries, checkpoints, dead letters and metrics are the
runtime's (connectors/runtime/).

Example (a runnable sketch of the smallest sink)::

    class EchoSink(Sink):
        async def execute(self, command, envelope):
            print(command.kind)
            return Effect()

    PLUGIN = ConnectorPlugin(kind="echo", config_model=EchoConfig,
                             build=lambda cfg, ctx: ConnectorParts(sink=EchoSink()))

Threads and loops: the runtime calls every method below on its one asyncio event loop, in
the `threadlink connectors run` process; none may block it (use an async client, or
`asyncio.to_thread`). Kafka's blocking clients run on the runtime's own threads.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias

from pydantic import BaseModel

from schemas.commands import Command
from schemas.envelope import Envelope
from schemas.outcomes import Effect
from schemas.topics import TopicNames


@dataclass(frozen=True)
class Lane:
    """A rate limit shared by every command that names it: at most `per_second` on average,
    `burst` at once. Names are the sink's own (e.g. "channel:C123", "method:chat.update");
    the runtime's scheduler (connectors/runtime/scheduler.py) keeps one token bucket per name."""

    name: str
    per_second: float
    burst: int = 1


class Publisher(Protocol):
    async def publish(self, topic: str, key: str, envelope: Envelope[Any]) -> None:
        """Send one event. Returns only after the broker acknowledged it (acks=all,
        idempotent producer); raises `PublishError` if it could not be stored, and
        `EventTooLarge` (skippable) if it never can be. Webhook handlers await this before
        answering 2xx, so an acknowledged event is never lost. The runtime hands each
        connector a publisher that counts its events under the connector's name."""


class PublishedLately(Protocol):
    async def __call__(self, topic: str, *, id_prefix: str, since_s: float) -> list[str]:
        """Ids starting with `id_prefix` of the envelopes on `topic` from the last `since_s`
        seconds, oldest first, at most connectors.runtime.recent.MAX_IDS."""


@dataclass
class ConnectorContext:
    """What the runtime gives a connector when building it."""

    name: str
    """The connector's name in the config (e.g. `slack`); the `platform`/`system` of its events."""
    topics: TopicNames
    publisher: Publisher
    """Labelled with `name`: its metrics say which connector published."""
    published_lately: PublishedLately | None = None
    """Reads back what was published lately (connectors/runtime/recent.py): a webhook source
    whose platform redelivers calls it in `start()` to recognise redeliveries of events that
    another replica, or this one before a restart, already published. None in unit tests."""


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup that also works on a plain dict (tests pass those)."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


# -- webhooks ---------------------------------------------------------------------------------


class Unauthorized(Exception):
    """A webhook request failed verification: answered `status` (401 unless the platform's
    protocol says otherwise, e.g. a Matrix homeserver's wrong hs_token is a 403) with `body`
    (default `{"error": "unauthorized"}`), and nothing is published."""

    def __init__(self, message: str, *, status: int = 401, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class WebhookRoute:
    """One HTTP route of a webhook source, served at `/webhooks/<connector name><path>`.

    `path` uses aiohttp's route syntax: `{name}` is a path parameter (one segment), e.g.
    `WebhookRoute("PUT", "/_matrix/app/v1/transactions/{txnId}")`. `path` may be "".
    """

    method: str = "POST"
    path: str = ""


@dataclass
class WebhookRequest:
    headers: Mapping[str, str]
    """Case-insensitive."""
    body: bytes
    """The raw body, exactly as received: signatures are computed over it. At most
    `connectors.runtime.limits.MAX_WEBHOOK_BODY_BYTES`; larger bodies never get here (413)."""
    query: Mapping[str, str] = field(default_factory=dict)
    method: str = "POST"
    path_params: Mapping[str, str] = field(default_factory=dict)
    """The route's `{name}` parameters, e.g. {"txnId": "42"}."""
    route: WebhookRoute = field(default_factory=WebhookRoute)
    """Which of the source's routes matched."""


WebhookOutcome: TypeAlias = Literal["accepted", "duplicate", "ignored"]


@dataclass
class WebhookResponse:
    status: int = 200
    json: Any = None
    text: str | None = None
    outcome: WebhookOutcome = "accepted"
    """For the metrics: `duplicate` when the request was a redelivery of something already
    published, `ignored` when nothing was published by design (a type threadlink ignores)."""


class WebhookSource(ABC):
    """A platform's webhook endpoint: one or more routes under `/webhooks/<connector name>`.

    Lifecycle, all on the runtime's event loop:

    - `start()`: once, before the HTTP server accepts requests. May call the platform (e.g. to
      learn threadlink's own ids). An exception stops the process before it serves.
    - `verify(request)` then `handle(request)`: for every request on one of `routes`;
      requests run concurrently and may interleave at each `await`. The runtime has already
      read the whole raw body, within the size limit and the read timeout.
    - `stop()`: once, after the HTTP server stopped accepting requests.

    What the runtime guarantees, in one place for every route (connectors/runtime/webhooks.py):
    `verify` runs on the raw body before anything parses it; a body over the limit is a 413 and
    a stalled one a 408 before `verify` is called; `Unauthorized` is a 401 (or its `status`);
    `SkippableError` (`InvalidPayload` from connectors.runtime.payloads among them) and
    pydantic's `ValidationError` are a 400; a `RetriableError` (`PublishError`: the broker did
    not acknowledge) is a 503 with `Retry-After`, so the platform redelivers; any other
    exception is a bug or a permanent problem: the raw request goes to the dead-letter topic
    (secrets and signatures left out) and is answered 202, so the platform does not redeliver
    it forever. Nothing a source raises is ever a 500.

    What a source must guarantee: answer 2xx only once its events are acknowledged (await
    `ctx.publisher.publish`); parse bodies with `connectors.runtime.payloads.parse_json`;
    give events the platform's delivery id, so redeliveries are recognisable downstream.

    Example (runnable: a Matrix application service's transactions endpoint)::

        class MatrixTransactions(WebhookSource):
            routes = (WebhookRoute("PUT", "/_matrix/app/v1/transactions/{txnId}"),)

            def __init__(self, ctx, hs_token):
                self.ctx, self.hs_token = ctx, hs_token

            def verify(self, request):
                if header_value(request.headers, "Authorization") != f"Bearer {self.hs_token}":
                    raise Unauthorized("wrong hs_token")

            async def handle(self, request):
                txn = parse_json_object(request.body, what="matrix transaction")
                for event in txn.get("events", []):
                    envelope = matrix_envelope(event, txn_id=request.path_params["txnId"])
                    await self.ctx.publisher.publish(self.ctx.topics.social_events,
                                                     envelope.subject, envelope)
                return WebhookResponse(json={})
    """

    path: str = ""
    """Shorthand for a source with one `POST` route (`routes` defaults to it)."""

    @property
    def routes(self) -> tuple[WebhookRoute, ...]:
        """The routes this source serves (override with a class attribute for several)."""
        return (WebhookRoute("POST", self.path),)

    async def start(self) -> None:
        """Before the HTTP server accepts requests."""

    async def stop(self) -> None:
        """After the HTTP server stopped accepting requests."""

    @abstractmethod
    def verify(self, request: WebhookRequest) -> None:
        """Check the request's signature on the raw body (and its method, path parameters,
        headers and query), before any parsing. Raise `Unauthorized` with the reason (logged,
        never the secret) to answer 401. Synchronous and quick: it runs for every request,
        also the unauthenticated ones."""

    @abstractmethod
    async def handle(self, request: WebhookRequest) -> WebhookResponse:
        """Turn a verified request into envelopes and publish them (awaiting the broker's
        ack), then return the platform's expected answer, with `outcome="duplicate"` for a
        redelivery that published nothing new. See the class doc for what each exception
        becomes."""


# -- pollers ----------------------------------------------------------------------------------

Cursor: TypeAlias = dict[str, Any] | str | None
"""Where a poller is in the platform's changes: any JSON-able dict or string (a timestamp, a
page token, an id). None before the first poll."""


@dataclass
class PollResult:
    """What one poll found."""

    events: list[tuple[str, str, Envelope[Any]]] = field(default_factory=list)
    """(topic, key, envelope) to publish, in order."""
    cursor: Cursor = None
    """Where the next poll starts. Published with `events` in one Kafka transaction: after a
    crash or a hand-over the next owner resumes exactly here, with no gap and no duplicate."""
    more: bool = False
    """The platform has more right now (a page of a backfill): poll again without waiting."""


class PollingSource(ABC):
    """Asks a platform for changes, from a cursor the runtime keeps.

    Lifecycle (connectors/runtime/pollers.py), all on the runtime's event loop:

    - The runtime checkpoints each poller's cursor in the compacted topic
      `<ns>.connectors.checkpoints`, keyed `<connector>/<name>`. Every replica joins one
      consumer group on that topic; the replica that Kafka assigns the key's partition owns
      the poller. No lock of our own: Kafka's group membership decides, and a replica that
      dies hands its pollers on within the group's session timeout.
    - On becoming the owner, the runtime reads the partition to its end (read committed) for
      the latest cursor (`initial_cursor` if there is none), then calls `start()` once.
    - `poll(cursor)`: every `interval_s` (at once again when the result says `more`), never
      concurrently with itself. The runtime publishes `result.events` and `result.cursor` in
      one transaction, with a transactional id of the connector and poller, so an owner that
      lost its partition but did not notice (a zombie) is fenced and cannot commit.
    - When the partition is revoked (a rebalance, shutdown) polling stops before the partition
      is handed on: a poll in progress is cancelled (nothing of it was published; the next
      owner polls from the same cursor), but a poll whose result came back is committed first,
      not thrown away to be polled again. Then `stop()` is called.
    - A newer owner fenced this one (its producer was fenced): polling stops with one warning,
      and `stop()` is called; it is not retried.
    - `RetriableError`: polled again after its `retry_after` when the platform said (a 429's
      Retry-After), else after exponential backoff. Any other exception: logged,
      polled again after `interval_s` (a bug must not stop the other pollers).

    What a poller must guarantee: `poll` only reads the platform and maps what it finds; it
    publishes nothing itself, and the cursor it returns covers exactly the events it returns.
    Readers of its topics that must not see aborted events read with `isolation_level`
    read_committed.

    Example (runnable: issues updated since the last poll)::

        class UpdatedIssues(PollingSource):
            name = "updated-issues"
            interval_s = 60

            def __init__(self, ctx, client):
                self.ctx, self.client = ctx, client

            async def poll(self, cursor):
                since = (cursor or {}).get("updated", "1970-01-01T00:00:00Z")
                page = await self.client.search(f'updated > "{since}" ORDER BY updated', limit=100)
                events = [(self.ctx.topics.records, issue.ref.id, issue_envelope(issue)) for issue in page.issues]
                newest = page.issues[-1].updated if page.issues else since
                return PollResult(events=events, cursor={"updated": newest}, more=page.has_more)
    """

    name: str = "poll"
    """Unique within the connector: names its checkpoint (`<connector>/<name>`)."""
    interval_s: float = 30.0
    initial_cursor: Cursor = None
    """The cursor of the very first poll, when no checkpoint exists yet."""

    async def start(self) -> None:
        """Once this replica owns the poller, before its first poll."""

    async def stop(self) -> None:
        """Once it no longer does (revoked, or shutting down), after its last poll."""

    @abstractmethod
    async def poll(self, cursor: Cursor) -> PollResult:
        """Fetch what changed since `cursor` and map it; see the class doc."""


# -- long-lived clients -------------------------------------------------------------------------


class ConnectionLost(Exception):
    """The upstream connection dropped or could not be made: the runtime reconnects after a
    backoff. Raise it (or let an `OSError` through) from `connect` or `run`."""


class Emit(Protocol):
    """Hands events to the runtime's batched publisher (connectors/runtime/batching.py)."""

    async def __call__(self, topic: str, key: str, envelope: Envelope[Any]) -> asyncio.Future[None]:
        """Queue one event and return its delivery: an asyncio future that completes once the
        broker acknowledged the batch holding it, or fails with `PublishError`. Await it, or
        `add_done_callback` to acknowledge upstream without holding up the next message.
        The call itself returns at once, unless the bounded in-flight queue is full: then it
        waits for room (backpressure reaches the upstream client). Raises `EventTooLarge` for
        an event the broker can never take."""

    async def flush(self) -> None:
        """Wait until everything emitted so far is acknowledged (a barrier)."""


class StreamSource(ABC):
    """A long-lived client that holds a connection to a platform (MQTT, OPC UA) and turns what
    arrives into events.

    Lifecycle (connectors/runtime/streaming.py), all on the runtime's event loop, one task per
    source:

    - `start()` once; then, until shutdown: `connect()`, `run(emit)`, and after `run` returns
      or raises `ConnectionLost` (or an `OSError`), `disconnect()`, a backoff with jitter
      (`reconnect_initial_s` doubling up to `reconnect_max_s`; back to the start after a
      connection that stayed up), and `connect()` again. Another exception is logged and
      treated the same way. `stop()` once at the end.
    - Shutdown cancels `run`; the runtime then flushes what was emitted and calls
      `disconnect()` and `stop()`.
    - `emit` batches produces (linger, batch size) and applies backpressure; see `Emit`.

    What a source must guarantee: acknowledge upstream (MQTT PUBACK, OPC UA ack) only once the
    event's delivery has completed, never on `emit` returning; after a reconnect the platform
    redelivers what was not acknowledged, so nothing is lost (at least once: give events the
    platform's message id so redeliveries are recognisable downstream).

    Example (runnable with an MQTT client library that has manual acknowledgements)::

        class Telemetry(StreamSource):
            name = "telemetry"

            def __init__(self, ctx, url, topic):
                self.ctx, self.url, self.topic = ctx, url, topic

            async def connect(self):
                self.client = await mqtt.connect(self.url, clean_session=False, manual_ack=True)

            async def run(self, emit):
                await self.client.subscribe("plant/+/telemetry", qos=1)
                async for message in self.client.messages():   # raises on connection loss
                    delivery = await emit(self.topic, message.topic, telemetry_envelope(message))
                    delivery.add_done_callback(lambda d, m=message: d.exception() or m.ack())

            async def disconnect(self):
                await self.client.close()
    """

    name: str = "stream"
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0

    async def start(self) -> None:
        """Once, before the first `connect`."""

    async def stop(self) -> None:
        """Once, after the last `disconnect`."""

    @abstractmethod
    async def connect(self) -> None:
        """Open the connection. Raise `ConnectionLost` (or an OSError) when it cannot be had."""

    @abstractmethod
    async def run(self, emit: Emit) -> None:
        """Subscribe and loop over what arrives, emitting events; return or raise
        `ConnectionLost` when the connection ends."""

    async def disconnect(self) -> None:
        """Close the connection (also after it was lost); must not raise."""


# -- sinks ----------------------------------------------------------------------------------------


class Sink(ABC):
    """Carries out commands addressed to this connector.

    The runtime (connectors/runtime/sinks.py) consumes `<namespace>.commands.<name>` and calls
    `execute` for many commands at once, never two of one Kafka key (a thread, a record) at a
    time and always in that key's order. Before each call it takes a token from each lane
    `lanes(command)` names, so the vendor's limits hold however many commands wait; commands
    of a busy lane wait while other lanes go on. It skips commands the ledger has as done,
    waits for `not_before` and drops what a newer command of the same `coalesce_key`
    supersedes, records an `attempted` entry before `execute`, and retries `RetriableError`
    with backoff and jitter (a `BackpressureError` also holds the command's first lane for
    its `retry_after`). `AuthError` pauses the whole sink until the credential works;
    `FatalError`/`SkippableError`/exhausted retries go to the dead-letter topic and are
    reported failed. Successes are recorded as done and reported; offsets are committed once
    everything before them is finished.

    `execute` must be safe to run concurrently for different keys (share one HTTP client).
    `max_concurrency` bounds the calls in flight at once.
    """

    max_concurrency: int = 16

    def lanes(self, command: Command) -> Sequence[Lane]:
        """The rate limits this command is subject to, narrowest first (e.g. its channel, then
        the API method's tier). The default: none."""
        return ()

    async def start(self) -> None:
        """Once, before the first command."""

    async def stop(self) -> None:
        """Once, after the last command."""

    def outcome_unknown(self, command_id: str) -> None:
        """Called by the runtime before `execute` when an earlier attempt of this command was
        started but never recorded as done (a crash, a restart, another instance took over):
        its effect may exist. A sink that can check the platform should look before acting
        again. The default does nothing."""

    @abstractmethod
    async def execute(self, command: Command, envelope: Envelope[Command]) -> Effect:
        """Do the side effect of one command. Return what it made (e.g. the id of the posted
        message): stored in the ledger and reported to the flows as the command's outcome."""


@dataclass
class ConnectorParts:
    webhooks: list[WebhookSource] = field(default_factory=list)
    pollers: list[PollingSource] = field(default_factory=list)
    streams: list[StreamSource] = field(default_factory=list)
    sink: Sink | None = None


@dataclass(frozen=True)
class ConnectorPlugin:
    kind: str
    """The `type` a config entry names (defaults to the entry's name)."""
    config_model: type[BaseModel]
    build: Callable[[Any, ConnectorContext], ConnectorParts]
    description: str = ""
