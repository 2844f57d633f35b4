"""What a connector published lately, read back from Kafka at start: the ids of the envelopes
a webhook source already published, so a platform's redelivery that reaches a restarted (or
another) replica is still recognised as one.

Slack redelivers an event up to three times over a few minutes; reading the last quarter of an
hour of the topic covers them, and is bounded in time and count whatever the traffic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from kafka import TopicPartition
from kafka.errors import KafkaError

from connectors.runtime.kafka import standalone_consumer

log = logging.getLogger(__name__)

#: At most this many ids are read back (the newest are kept): RecentIds' own bound.
MAX_IDS = 100_000
READ_TIMEOUT_S = 15.0


def _published_ids(
    bootstrap_servers: str, topic: str, *, id_prefix: str, since_s: float, client_id: str, limit: int, timeout_s: float
) -> list[str]:
    consumer = standalone_consumer(bootstrap_servers, client_id=client_id)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not tps:
            return []
        consumer.assign(tps)
        since_ms = int((time.time() - since_s) * 1000)
        starts = consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
        end = consumer.end_offsets(tps)
        for tp in tps:
            start = starts.get(tp)
            consumer.seek(tp, start.offset if start is not None else end[tp])
        ids: deque[str] = deque(maxlen=limit)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading the last {since_s:.0f}s of {topic} took longer than {timeout_s:.0f}s")
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    envelope_id = _id_of(record.value)
                    if envelope_id is not None and envelope_id.startswith(id_prefix):
                        ids.append(envelope_id)
        return list(ids)
    finally:
        consumer.close()


def _id_of(value: Any) -> str | None:
    try:
        doc = orjson.loads(value)
    except (orjson.JSONDecodeError, TypeError):
        return None
    envelope_id = doc.get("id") if isinstance(doc, dict) else None
    return envelope_id if isinstance(envelope_id, str) else None


async def published_ids(
    bootstrap_servers: str,
    topic: str,
    *,
    id_prefix: str,
    since_s: float,
    client_id: str,
    limit: int = MAX_IDS,
    timeout_s: float = READ_TIMEOUT_S,
) -> list[str]:
    """Ids starting with `id_prefix` of the envelopes on `topic` from the last `since_s`
    seconds, oldest first (on a worker thread: kafka-python blocks)."""
    return await asyncio.to_thread(
        _published_ids,
        bootstrap_servers,
        topic,
        id_prefix=id_prefix,
        since_s=since_s,
        client_id=client_id,
        limit=limit,
        timeout_s=timeout_s,
    )


async def remember_published(
    ctx: Any,
    recent: Any,
    window_s: float,
    *,
    topics: Sequence[str] | None = None,
    delivery_of: Callable[[str], str] | None = None,
) -> int:
    """Fill `recent` (a RecentIds) with the platform ids (`<connector>:` stripped, then
    `delivery_of` applied: one delivery may have published several events) of the events `ctx`'s
    connector published on `topics` (default: the social events topic) in the last `window_s`
    seconds; returns how many. A broker that does not answer is logged, not raised: downstream
    still knows a redelivery by its envelope id."""
    if ctx.published_lately is None or window_s == 0:
        return 0
    prefix = f"{ctx.name}:"
    remembered = 0
    for topic in topics or (ctx.topics.social_events,):
        try:
            ids = await ctx.published_lately(topic, id_prefix=prefix, since_s=window_s)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning(
                "%s: could not read back the events published lately on %s (%s); redeliveries of events "
                "published before this start will not be recognised here",
                ctx.name,
                topic,
                exc,
            )
            continue
        for envelope_id in ids:
            delivery = envelope_id.removeprefix(prefix)
            recent.remember(delivery_of(delivery) if delivery_of else delivery)
        remembered += len(ids)
    log.info("%s: remembered %d events published in the last %.0fs", ctx.name, remembered, window_s)
    return remembered
