"""`threadlink dlq list | replay`: look at what could not be processed, and send it back once
the cause is fixed. Replaying is safe: sinks skip commands their ledger has seen."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, TextIO

from kafka import KafkaConsumer, TopicPartition
from pydantic import TypeAdapter, ValidationError

from connectors.runtime.deadletter import WEBHOOK_TOPIC_PREFIX
from connectors.runtime.kafka import KafkaPublisher, read_to_end
from schemas.deadletters import DeadLetter
from schemas.envelope import Envelope
from threadlink.config import Settings
from threadlink.progress import Progress

LETTER = TypeAdapter(Envelope[DeadLetter])
REPLAY_HEADER = "threadlink-replay-of"


@dataclass
class ReplayReport:
    replayed: list[DeadLetter]
    skipped: int
    complete: bool
    """False when the time limit ended the replay early: run it again for the rest."""


def list_dead_letters(settings: Settings) -> list[tuple[int, DeadLetter]]:
    kafka = settings.kafka
    letters = []
    for record in read_to_end(kafka.bootstrap_servers or "", kafka.topics.dead_letters, client_id="threadlink-dlq"):
        try:
            letters.append((record.offset, LETTER.validate_json(record.value).data))
        except ValidationError:
            continue
    return letters


def _replayable(record: Any, consumer: str | None, report: ReplayReport) -> DeadLetter | None:
    """The letter to send back, or None (counted as skipped): not a letter, another consumer's,
    or a webhook request, which came over HTTP and has no topic to go back to."""
    try:
        letter = LETTER.validate_json(record.value).data
    except ValidationError:
        report.skipped += 1
        return None
    # Partition -1: it came from outside Kafka (a webhook request, an MQTT message), not a topic.
    from_outside = letter.topic.startswith(WEBHOOK_TOPIC_PREFIX) or letter.partition < 0
    if (consumer and letter.consumer != consumer) or from_outside:
        report.skipped += 1
        return None
    return letter


def replay(
    settings: Settings,
    *,
    consumer: str | None = None,
    dry_run: bool = False,
    timeout_s: float = 30,
    progress_out: TextIO | None = None,
) -> ReplayReport:
    """Send every dead letter not replayed before back to its topic (those of `consumer` only,
    if given). Progress is a consumer group per filter, so each letter is replayed once per
    filter; sinks skip what their ledger has as done, so a second replay does no harm."""
    kafka = settings.kafka
    servers = (kafka.bootstrap_servers or "").split(",")
    reader = KafkaConsumer(
        bootstrap_servers=servers,
        # One progress per filter: replaying one consumer's letters never marks another's as done.
        group_id=f"{kafka.namespace}.dlq-replay" + (f".{consumer}" if consumer else ""),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="threadlink-dlq",
    )
    publisher = None if dry_run else KafkaPublisher(kafka.bootstrap_servers or "", client_id="threadlink-dlq")
    report = ReplayReport(replayed=[], skipped=0, complete=False)
    try:
        partitions = [
            TopicPartition(kafka.topics.dead_letters, p)
            for p in sorted(reader.partitions_for_topic(kafka.topics.dead_letters) or [])
        ]
        reader.assign(partitions)
        end = reader.end_offsets(partitions)
        remaining = sum(end[tp] - reader.position(tp) for tp in partitions)
        deadline = time.monotonic() + timeout_s
        with Progress("dead letters read", total=remaining, out=progress_out) as progress:
            while any(reader.position(tp) < end[tp] for tp in partitions) and time.monotonic() < deadline:
                for records in reader.poll(timeout_ms=500).values():
                    progress.advance(len(records))
                    for record in records:
                        letter = _replayable(record, consumer, report)
                        if letter is None:
                            continue
                        if publisher is not None:
                            asyncio.run(
                                publisher.publish_raw(
                                    letter.topic,
                                    letter.key,
                                    letter.original_value(),
                                    [(REPLAY_HEADER, f"{letter.topic}:{letter.partition}:{letter.offset}".encode())],
                                )
                            )
                        report.replayed.append(letter)
        report.complete = all(reader.position(tp) >= end[tp] for tp in partitions)
        if publisher is not None:
            reader.commit()
    finally:
        reader.close()
        if publisher is not None:
            publisher.close()
    return report
