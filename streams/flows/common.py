"""What every flow does the same way: parse with the contract, dead-letter what fails,
send envelopes with their trace context."""

from __future__ import annotations

import base64
import logging
from typing import Any, TypeVar

import faust
from pydantic import TypeAdapter, ValidationError

from schemas import events
from schemas.commands import DeadLetter
from schemas.envelope import Envelope, utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")


async def send(topic: faust.TopicT, key: str, envelope: Envelope[Any]) -> None:
    await topic.send(key=key.encode(), value=envelope.to_bytes(), headers=[(k, v) for k, v in envelope.kafka_headers()])


async def dead_letter(
    dead_letters: faust.TopicT, event: faust.EventT, *, kind: str, reason: str, consumer: str
) -> None:
    message = event.message
    raw = message.value if isinstance(message.value, bytes) else str(message.value).encode()
    try:
        value, encoding = raw.decode(), "utf-8"
    except UnicodeDecodeError:
        value, encoding = base64.b64encode(raw).decode(), "base64"
    key = message.key.decode(errors="replace") if isinstance(message.key, bytes) else message.key
    letter = DeadLetter(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=key,
        value=value,
        value_encoding=encoding,
        error_kind=kind,
        reason=reason,  # type: ignore[arg-type]
        consumer=consumer,
        failed_at=utcnow(),
    )
    log.error("%s: dead-lettering %s[%d]@%d: %s", consumer, message.topic, message.partition, message.offset, reason)
    await send(
        dead_letters,
        key or "",
        Envelope.wrap(letter, type=events.DEAD_LETTER, source_system=consumer, subject=key, visibility="restricted"),
    )


def parse(adapter: TypeAdapter[T], value: Any) -> T:
    return adapter.validate_json(value)


__all__ = ["ValidationError", "dead_letter", "parse", "send"]
