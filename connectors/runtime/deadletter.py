"""Sending what cannot be processed to the dead-letter topic, with the reason."""

from __future__ import annotations

import base64
from typing import Any

from connectors.runtime.metrics import DEAD_LETTERS
from schemas import events
from schemas.commands import DeadLetter
from schemas.envelope import Envelope, utcnow
from schemas.topics import TopicNames


def dead_letter_for(record: Any, *, error_kind: str, reason: str, consumer: str, attempts: int = 1) -> DeadLetter:
    """`record` is a kafka-python ConsumerRecord (topic, partition, offset, key, value)."""
    raw: bytes = record.value or b""
    try:
        value, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        value, encoding = base64.b64encode(raw).decode(), "base64"
    key = record.key.decode("utf-8", "replace") if isinstance(record.key, bytes) else record.key
    return DeadLetter(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=key,
        value=value,
        value_encoding=encoding,  # type: ignore[arg-type]
        error_kind=error_kind,  # type: ignore[arg-type]
        reason=reason,
        consumer=consumer,
        failed_at=utcnow(),
        attempts=attempts,
    )


async def send_to_dead_letters(publisher: Any, topics: TopicNames, letter: DeadLetter) -> None:
    envelope = Envelope.wrap(
        letter, type=events.DEAD_LETTER, source_system=letter.consumer, subject=letter.key, visibility="restricted"
    )
    await publisher.publish(topics.dead_letters, letter.key or "", envelope)
    DEAD_LETTERS.labels(letter.consumer, letter.error_kind).inc()


def original_value(letter: DeadLetter) -> bytes:
    return base64.b64decode(letter.value) if letter.value_encoding == "base64" else letter.value.encode()
