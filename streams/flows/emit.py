"""What a flow decides to send: `Emit`s, built here in one way for every flow.

Flows are pure: given an input event and the stored state, they change the state and return
emits. The runner (streams/flows/runner.py) sends them all at once and acknowledges the input
only once every one is durable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas import events
from schemas.commands import Command
from schemas.envelope import Envelope
from schemas.links import Link, link_id
from schemas.records import RecordRef
from schemas.social import ThreadRef
from schemas.topics import TopicNames
from schemas.visibility import Visibility


@dataclass(frozen=True)
class Emit:
    topic: str
    key: str
    envelope: Envelope[Any]


def event_ms(envelope: Envelope[Any]) -> int:
    """The event time flows decide by: when threadlink received it (epoch ms), from the event."""
    return int(envelope.received_at.timestamp() * 1000)


def at_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def after(envelope: Envelope[Any], seconds: float) -> datetime | None:
    """`seconds` after the event (a coalescing window's end), or None for no window."""
    return envelope.received_at + timedelta(seconds=seconds) if seconds > 0 else None


class Emitter:
    """Builds the envelopes of one flow's outputs, with the input's trace context and times: a
    derived event happened when its cause did and was received with it, so the sinks'
    end-to-end latency counts from the platform's event, and flows that read the derived event
    decide by the same time."""

    def __init__(self, names: TopicNames, source: str = "streams") -> None:
        self.names = names
        self.source = source

    def command(self, command: Command, key: str, cause: Envelope[Any], visibility: Visibility) -> Emit:
        envelope = Envelope.wrap(
            command,
            type=events.COMMAND.format(kind=command.kind),
            source_system=self.source,
            subject=key,
            id=command.command_id,
            visibility=visibility,
            parent_traceparent=cause.traceparent,
            occurred_at=cause.occurred_at,
            received_at=cause.received_at,
        )
        return Emit(self.names.commands(command.target), key, envelope)

    def link(
        self,
        thread: ThreadRef,
        record: RecordRef,
        *,
        status: Any,
        message_id: str,
        cause: Envelope[Any],
        card_message_id: str | None = None,
        version_shown: int | None = None,
        reason: str | None = None,
        visibility: Visibility = "restricted",
    ) -> Emit:
        link = Link(
            thread=thread,
            record=record,
            status=status,
            message_id=message_id,
            card_message_id=card_message_id,
            version_shown=version_shown,
            reason=reason,
            updated_at=cause.received_at,
        )
        key = link_id(thread, record)
        envelope = Envelope.wrap(
            link,
            type=events.LINK_CHANGED.format(status=status),
            source_system=self.source,
            subject=key,
            visibility=visibility,
            parent_traceparent=cause.traceparent,
            occurred_at=cause.occurred_at,
            received_at=cause.received_at,
        )
        return Emit(self.names.links, key, envelope)

    def event(self, topic: str, key: str, data: Any, *, type: str, cause: Envelope[Any], **extra: Any) -> Emit:
        envelope = Envelope.wrap(
            data,
            type=type,
            source_system=self.source,
            subject=key,
            visibility=extra.pop("visibility", cause.visibility),
            parent_traceparent=cause.traceparent,
            occurred_at=cause.occurred_at,
            received_at=cause.received_at,
            **extra,
        )
        return Emit(topic, key, envelope)
