"""Sending what cannot be processed to the dead-letter topic, with the reason."""

from __future__ import annotations

from typing import Any

from connectors.runtime.metrics import DEAD_LETTERS
from schemas import events
from schemas.deadletters import DeadLetter
from schemas.envelope import Envelope
from schemas.topics import TopicNames


async def send_to_dead_letters(publisher: Any, topics: TopicNames, letter: DeadLetter) -> None:
    envelope = Envelope.wrap(
        letter, type=events.DEAD_LETTER, source_system=letter.consumer, subject=letter.key, visibility="restricted"
    )
    await publisher.publish(topics.dead_letters, letter.key or "", envelope)
    DEAD_LETTERS.labels(letter.consumer, letter.error_kind).inc()
