"""What every flow does the same way: read envelopes with the contract (dead-lettering what
does not parse, explicitly, before Faust acks it), send envelopes with their trace context."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import faust
from pydantic import TypeAdapter, ValidationError

from schemas import events
from schemas.commands import Command, DeadLetter
from schemas.envelope import Envelope

log = logging.getLogger(__name__)
T = TypeVar("T")


async def send(topic: faust.TopicT, key: str, envelope: Envelope[Any]) -> None:
    """Returns once the broker acknowledged it: Faust's send() only buffers, and what follows a
    send (marking a link done, acking the input) must not happen before the send is durable."""
    delivered = await topic.send(key=key.encode(), value=envelope.to_bytes(), headers=list(envelope.kafka_headers()))
    await delivered


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


async def process(
    stream: Any,
    adapter: TypeAdapter[Envelope[T]],
    handler: Callable[[Envelope[T]], Awaitable[None]],
    dead_letters: faust.TopicT,
    *,
    consumer: str,
    what: str,
) -> None:
    """Run `handler` on each envelope of the stream. Faust acks an event whose handler raised,
    so nothing may escape: input that does not match the contract, and a handler that fails,
    both put the event on the dead-letter topic (with the reason) before it is acked."""
    async for event in stream.events():
        try:
            envelope = adapter.validate_json(event.value)
        except ValidationError as exc:
            reason = f"not a {what} envelope: {exc.error_count()} problem(s)"
            await _dead_letter(event, dead_letters, consumer, "invalid", reason)
            continue
        try:
            await handler(envelope)
        except Exception as exc:
            log.exception("%s: handling %s %s failed", consumer, what, envelope.id)
            # Validation messages quote the input (titles, links): the reason names the problem only.
            detail = f"{exc.error_count()} problem(s)" if isinstance(exc, ValidationError) else str(exc)[:200]
            await _dead_letter(event, dead_letters, consumer, "fatal", f"{type(exc).__name__}: {detail}")


async def _dead_letter(event: Any, dead_letters: faust.TopicT, consumer: str, kind: str, reason: str) -> None:
    letter = DeadLetter.of_record(event.message, error_kind=kind, reason=reason, consumer=consumer)
    log.error("%s: dead-lettering %s[%d]@%d: %s", consumer, letter.topic, letter.partition, letter.offset, reason)
    envelope = Envelope.wrap(
        letter, type=events.DEAD_LETTER, source_system=consumer, subject=letter.key, visibility="restricted"
    )
    await send(dead_letters, letter.key or "", envelope)
