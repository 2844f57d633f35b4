"""What a connector is, and what the runtime promises it.

A connector is a folder under connectors/ with a `config.py` (a pydantic model), and a
`connector.py` exposing `PLUGIN`, a `ConnectorPlugin` whose `build()` returns the parts:

- `WebhookSource`s: the platform pushes events to us over HTTP.
- `PollingSource`s: we ask the platform for changes on an interval.
- one `Sink` (optional): carries out commands from `<namespace>.commands.<connector name>`.

Registering it is one line in connectors/registry.py.

Example (a runnable sketch of the smallest sink)::

    class EchoSink(Sink):
        async def execute(self, command, envelope):
            print(command.kind)
            return Effect()

    PLUGIN = ConnectorPlugin(kind="echo", config_model=EchoConfig,
                             build=lambda cfg, ctx: ConnectorParts(sink=EchoSink()))
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from schemas.commands import Command
from schemas.envelope import Envelope
from schemas.outcomes import Effect
from schemas.topics import TopicNames


class Publisher(Protocol):
    async def publish(self, topic: str, key: str, envelope: Envelope[Any]) -> None:
        """Send one event. Returns only after the broker acknowledged it (acks=all,
        idempotent producer); raises if it could not be stored. Webhook handlers
        await this before answering 2xx, so an acknowledged event is never lost."""


@dataclass
class ConnectorContext:
    """What the runtime gives a connector when building it."""

    name: str
    """The connector's name in the config (e.g. `slack`); the `platform`/`system` of its events."""
    topics: TopicNames
    publisher: Publisher


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup that also works on a plain dict (tests pass those)."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


class Unauthorized(Exception):
    """A webhook request failed verification: answered 401, nothing is published."""


@dataclass
class WebhookRequest:
    headers: Mapping[str, str]
    """Case-insensitive."""
    body: bytes
    """The raw body, exactly as received: signatures are computed over it."""
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass
class WebhookResponse:
    status: int = 200
    json: Any = None
    text: str | None = None


class WebhookSource(ABC):
    """A platform's webhook endpoint, served by the runtime at `/webhooks/<connector name><path>`.

    Lifecycle: the runtime calls `verify` and then `handle` on its event loop for every
    request; concurrent requests may interleave. `start`/`stop` are called once.
    """

    path: str = ""

    async def start(self) -> None:
        """Before the HTTP server accepts requests."""

    async def stop(self) -> None:
        """After the HTTP server stopped accepting requests."""

    @abstractmethod
    def verify(self, request: WebhookRequest) -> None:
        """Check the request's signature on the raw body, before any parsing.
        Raise `Unauthorized` with the reason (logged, never the secret) to answer 401."""

    @abstractmethod
    async def handle(self, request: WebhookRequest) -> WebhookResponse:
        """Turn a verified request into envelopes and publish them (awaiting the broker's
        ack), then return the platform's expected answer. Raise `SkippableError` for a
        payload that cannot be understood (answered 400); any other exception is answered
        500 so the platform retries."""


class PollingSource(ABC):
    """Asks a platform for changes every `interval_s`; keeps its own cursor."""

    interval_s: float = 30.0

    @abstractmethod
    async def poll(self) -> None:
        """Called by the runtime every `interval_s`, never concurrently with itself.
        Raise RetriableError to be called again after backoff."""


class Sink(ABC):
    """Carries out commands addressed to this connector.

    The runtime consumes `<namespace>.commands.<name>` and skips commands whose `command_id`
    the ledger has as done. It records an `attempted` entry before calling `execute`, retries
    `RetriableError` with backoff and jitter (honouring `retry_after`), sends
    `FatalError`/`SkippableError`/exhausted retries to the dead-letter topic, records successes
    as done, and only then commits the offset, one command at a time.
    """

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
    sink: Sink | None = None


@dataclass(frozen=True)
class ConnectorPlugin:
    kind: str
    """The `type` a config entry names (defaults to the entry's name)."""
    config_model: type[BaseModel]
    build: Callable[[Any, ConnectorContext], ConnectorParts]
    description: str = ""
