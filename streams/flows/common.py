"""What every flow does the same way: read envelopes with the contract (dead-lettering what
does not parse, explicitly, before Faust acks it), send envelopes with their trace context."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import faust
from pydantic import TypeAdapter, ValidationError

from schemas import events
from schemas.commands import Command, DeadLetter
from schemas.envelope import Envelope

log = logging.getLogger(__name__)
T = TypeVar("T")


async def send(topic: faust.TopicT, key: str, envelope: Envelope[Any]) -> None:
    await topic.send(key=key.encode(), value=envelope.to_bytes(), headers=list(envelope.kafka_headers()))


async def send_command(topics: Any, command: Command, key: str, traceparent: str | None) -> None:
    """To the commands topic of the connector that carries it out."""
    envelope = Envelope.wrap(
        command,
        type=events.COMMAND.format(kind=command.kind),
        source_system="streams",
        subject=key,
        parent_traceparent=traceparent,
    )
    await send(topics.commands(command.target), key, envelope)


async def valid_envelopes(
    stream: Any, adapter: TypeAdapter[Envelope[T]], dead_letters: faust.TopicT, *, consumer: str, what: str
) -> AsyncIterator[Envelope[T]]:
    """The stream's envelopes that match the contract; the others go to the dead-letter topic."""
    async for event in stream.events():
        try:
            yield adapter.validate_json(event.value)
        except ValidationError as exc:
            letter = DeadLetter.of_record(
                event.message,
                error_kind="invalid",
                reason=f"not a {what} envelope: {exc.error_count()} problem(s)",
                consumer=consumer,
            )
            log.error(
                "%s: dead-lettering %s[%d]@%d: %s",
                consumer,
                letter.topic,
                letter.partition,
                letter.offset,
                letter.reason,
            )
            await send(
                dead_letters,
                letter.key or "",
                Envelope.wrap(
                    letter, type=events.DEAD_LETTER, source_system=consumer, subject=letter.key, visibility="restricted"
                ),
            )
