"""Consumer lag of the streams worker: per input topic, the events on its assigned partitions
that are not committed yet (end offset minus committed offset), refreshed every few seconds."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import faust
from prometheus_client import Gauge

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 5.0

STREAM_LAG = Gauge(
    "threadlink_stream_consumer_lag_records",
    "Events on this worker's partitions of an input topic not committed yet (end offset minus committed).",
    ["topic"],
)


def lag_by_topic(ends: Mapping[Any, int], committed: Mapping[Any, int | None], topics: Iterable[str]) -> dict[str, int]:
    """`ends` and `committed` are keyed by Faust TPs (`.topic`, `.partition`). A partition with
    nothing committed yet counts from its start: the group has done none of it."""
    lag = dict.fromkeys(topics, 0)
    for tp, end in ends.items():
        if tp.topic in lag:
            lag[tp.topic] += max(0, end - (committed.get(tp) or 0))
    return lag


def register(app: faust.App, topics: Iterable[str]) -> None:
    names = sorted(topics)
    for name in names:
        STREAM_LAG.labels(name).set(0)

    @app.timer(interval=LAG_INTERVAL_S, on_leader=False)
    async def measure_lag() -> None:
        consumer = app.consumer
        assigned = [tp for tp in consumer.assignment() if tp.topic in names]
        if not assigned:
            for name in names:
                STREAM_LAG.labels(name).set(0)
            return
        try:
            ends = await consumer.highwaters(*assigned)
        except Exception as exc:  # a broker blip: measured again next time
            log.debug("end offsets not read (%s); lag measured next time", exc)
            return
        # Faust keeps what it committed per partition; it has no public accessor.
        committed = getattr(consumer, "_committed_offset", {})
        for name, value in lag_by_topic(ends, committed, names).items():
            STREAM_LAG.labels(name).set(value)
