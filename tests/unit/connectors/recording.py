"""A test double of connectors.base.Publisher for connector unit tests (mapping, verification,
sinks against the sandbox stand-ins). Broker behaviour is tested on the real broker in
tests/integration; this only records what a connector asked to publish."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connectors.runtime.kafka import PublishError
from schemas.envelope import Envelope


@dataclass
class Published:
    topic: str
    key: str
    envelope: Envelope[Any]


@dataclass
class RecordingPublisher:
    """Records instead of sending. With `fail_with` set, publishes raise it: the next
    `fail_times` ones, or every one while `fail_times` is None. Without `fail_with` they raise
    what the real publisher raises when the broker is away: `PublishError`."""

    published: list[Published] = field(default_factory=list)
    fail_with: Exception | None = None
    fail_times: int | None = None
    attempts: int = 0

    async def publish(self, topic: str, key: str, envelope: Envelope[Any]) -> None:
        self.attempts += 1
        failing = self.fail_times is None and self.fail_with is not None
        if self.fail_times:
            self.fail_times -= 1
            failing = True
        if failing:
            raise self.fail_with or PublishError("broker did not acknowledge")
        envelope.to_bytes()  # what goes on the wire must serialise: a model that cannot is a bug here
        self.published.append(Published(topic, key, envelope))

    def on(self, topic: str) -> list[Published]:
        return [p for p in self.published if p.topic == topic]
