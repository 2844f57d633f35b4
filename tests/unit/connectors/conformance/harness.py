"""What the conformance suite needs from a connector, and the one place its parts are built.

A harness knows a connector's vendor: how to start its sandbox stand-in, what a real webhook of
that vendor looks like and how the vendor signs it, which command its sink carries out with one
API call, and how to make the stand-in refuse that call. Everything else, building the parts
through `connectors.registry.plugin_for(kind).build(...)` with a RecordingPublisher and running
their lifecycle as the runtime does, is done here once, so the suite exercises the real wiring.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import pytest

from connectors.base import ConnectorContext, ConnectorParts, Sink, WebhookRequest, WebhookResponse, WebhookSource
from connectors.errors import ConnectorError
from connectors.registry import plugin_for
from schemas import events
from schemas.commands import Command
from schemas.envelope import Envelope
from schemas.topics import TopicNames
from tests.unit.connectors.recording import RecordingPublisher

#: Signs with this to make a signature that is well formed but wrong.
WRONG_SECRET = "not-the-configured-secret"


class StandIn(Protocol):
    """What the suite uses of a sandbox stand-in (FakeSlack, FakeJira, ...)."""

    requests: list[Any]
    """Every request it received, in order."""

    def assert_no_violations(self) -> None:
        """Raise unless every request (and answer) matched the vendor's published spec."""

    async def stop(self) -> None: ...


@dataclass
class Running:
    """One connector built and started as the runtime would, against its stand-in."""

    harness: ConnectorHarness
    stand_in: Any
    ctx: ConnectorContext
    publisher: RecordingPublisher
    parts: ConnectorParts

    # A check that needs a part the connector does not have is skipped (shown by `pytest -ra`).

    @property
    def webhook(self) -> WebhookSource:
        """The webhook source the harness's sample requests are for."""
        if not self.parts.webhooks:
            pytest.skip(f"{self.harness.kind} has no webhook source")
        return self.harness.webhook_of(self.parts)

    @property
    def sink(self) -> Sink:
        if self.parts.sink is None:
            pytest.skip(f"{self.harness.kind} has no sink")
        return self.parts.sink

    async def sample_webhook(self) -> WebhookRequest:
        _ = self.webhook
        return await self.harness.sample_webhook(self.stand_in)

    async def sample_command(self) -> Command:
        _ = self.sink
        return await self.harness.sample_command(self.stand_in, self.ctx)

    def unsupported_command(self) -> Command:
        _ = self.sink
        return self.harness.unsupported_command(self.ctx)

    async def deliver(self, request: WebhookRequest) -> WebhookResponse:
        """What the runtime's webhook handler does with a request: verify on the raw body,
        then handle (connectors/runtime/webhooks.py)."""
        webhook = self.webhook
        webhook.verify(request)
        return await webhook.handle(request)

    def command_envelope(self, command: Command) -> Envelope[Command]:
        """The envelope a command arrives in, as the runtime reads it off the commands topic."""
        return Envelope[Command].wrap(command, type=events.COMMAND.format(kind=command.kind), source_system="streams")

    async def execute(self, command: Command) -> dict[str, Any]:
        return await self.sink.execute(command, self.command_envelope(command))


class ConnectorHarness(ABC):
    """Describe one connector to the conformance suite; see README.md for a walk-through.

    Lifecycle: the suite calls `running()` once a test (a fresh stand-in each time) and
    `connector(stand_in)` again when it needs a second, restarted instance of the connector.
    Sample requests and commands are made after the stand-in has started, so they can use it.
    """

    kind: ClassVar[str]
    """The connector's type in connectors.registry.PLUGINS."""
    signature_headers: ClassVar[tuple[str, ...]]
    """The headers that carry the webhook's signature; a request lacking any one is refused."""
    namespace: ClassVar[str] = "conformance"
    signs_body: ClassVar[bool] = True
    """False for a vendor that authenticates with a bearer token, not a signature over the body
    (a Matrix homeserver's hs_token): a tampered body cannot be told apart, so that case is left out."""
    time_fields: ClassVar[tuple[str, ...]] = ()
    """Top-level fields of the sample webhook's JSON that the connector turns into times: the
    hostile-input suite puts NaN and 1e300 there and expects a 400."""

    @property
    def name(self) -> str:
        """The connector's name in the config: deliberately not its kind, as when a deployment
        runs two of a kind (`jira-ops: {type: jira}`), so a connector that writes its kind
        where the configured name belongs (sourcesystem, record systems, thread platforms) fails."""
        return f"{self.kind}-conformance"

    # -- the stand-in and the config --------------------------------------------------------

    @abstractmethod
    async def start_stand_in(self) -> StandIn:
        """The vendor's sandbox stand-in, started on 127.0.0.1, port 0, with the test credentials."""

    @abstractmethod
    def config(self, stand_in: Any) -> Mapping[str, Any]:
        """The connector's config entry as in threadlink.yaml (a plain mapping), pointed at the stand-in."""

    @abstractmethod
    def secrets(self) -> tuple[str, ...]:
        """Every credential in `config` (in each form it travels in): none may appear in an error."""

    # -- webhooks ---------------------------------------------------------------------------

    def webhook_of(self, parts: ConnectorParts) -> WebhookSource:
        """The webhook source the sample requests are for (override when a connector has several)."""
        (webhook,) = parts.webhooks
        return webhook

    @abstractmethod
    async def sample_webhook(self, stand_in: Any) -> WebhookRequest:
        """A webhook the vendor would send about something that happened on the stand-in,
        correctly signed; the connector publishes at least one event for it."""

    @abstractmethod
    def sign(
        self, body: bytes, *, headers: Mapping[str, str] | None = None, secret: str | None = None
    ) -> WebhookRequest:
        """`body` signed as the vendor signs it (with `secret`, default the configured one),
        with `headers` (minus old signature headers) kept. Computed here, not by the connector."""

    def with_bad_signature(self, request: WebhookRequest) -> WebhookRequest:
        """The same request, signed with a wrong secret."""
        return self.sign(request.body, headers=request.headers, secret=WRONG_SECRET)

    def without_header(self, request: WebhookRequest, header: str) -> WebhookRequest:
        """The same request without one of its signature headers."""
        kept = {k: v for k, v in request.headers.items() if k.lower() != header.lower()}
        return WebhookRequest(
            headers=kept,
            body=request.body,
            query=request.query,
            method=request.method,
            path_params=request.path_params,
            route=request.route,
        )

    def redelivery(self, request: WebhookRequest) -> WebhookRequest:
        """The same webhook as the vendor redelivers it (retry headers, a fresh signature)."""
        return request

    def malformed_bodies(self) -> dict[str, bytes]:
        """Bodies that cannot be understood; each is signed and must be refused as skippable.
        Add the vendor's own shapes of a broken payload to these."""
        return {"not-json": b'{"type": "event', "not-utf8": b"\xff\xfe\x00", "json-array": b"[]"}

    # -- the sink ---------------------------------------------------------------------------

    @abstractmethod
    async def sample_command(self, stand_in: Any, ctx: ConnectorContext) -> Command:
        """A command the sink carries out with exactly one API call to the stand-in."""

    @abstractmethod
    def fail_next_call(self, stand_in: Any, status: int, *, retry_after: float | None = None) -> None:
        """Make the stand-in answer the sample command's API call with HTTP `status` (and
        `Retry-After`), through the stand-in's own controls."""

    def expected_error(self, status: int, default: type[ConnectorError]) -> type[ConnectorError]:
        """The error the sink raises for the sample call answered `status` (the suite's table by
        default). Override only where the vendor's protocol says otherwise, and say why."""
        return default

    @abstractmethod
    def unsupported_command(self, ctx: ConnectorContext) -> Command:
        """A command kind this sink does not carry out."""

    # -- done once, for every connector -----------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Running]:
        stand_in = await self.start_stand_in()
        try:
            async with self.connector(stand_in) as running:
                yield running
        finally:
            await stand_in.stop()

    @asynccontextmanager
    async def connector(self, stand_in: Any) -> AsyncIterator[Running]:
        """The connector built through its registry plugin, as the runtime builds it (config
        validated by the plugin's model), its webhooks and sink started, and stopped after."""
        plugin = plugin_for(self.kind)
        if plugin is None:
            raise LookupError(f"{self.kind!r} is not in connectors.registry.PLUGINS")
        publisher = RecordingPublisher()
        ctx = ConnectorContext(name=self.name, topics=TopicNames(namespace=self.namespace), publisher=publisher)
        config = plugin.config_model.model_validate(dict(self.config(stand_in)))
        parts = plugin.build(config, ctx)
        started: list[WebhookSource | Sink] = []
        try:
            for part in [*parts.webhooks, *([parts.sink] if parts.sink is not None else [])]:
                await part.start()
                started.append(part)
            yield Running(self, stand_in, ctx, publisher, parts)
        finally:
            for part in reversed(started):
                await part.stop()
