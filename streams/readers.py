"""A whole topic read into memory on a daemon thread, from its start and then as it grows, by
every worker alike (a plain consumer outside the group): for what any partition's events may
need, whichever partitions the worker owns (Know's articles, Reach's subscriptions)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kafka import TopicPartition

from connectors.runtime.kafka import standalone_consumer

log = logging.getLogger(__name__)


class TopicReader:
    """Hands every value of `topic` to `take`, until `stop()`. `caught_up` is set once what was
    on the topic when reading began has been taken (or the topic does not exist yet)."""

    def __init__(
        self, bootstrap_servers: str, topic: str, take: Callable[[bytes], None], *, client_id: str, name: str
    ) -> None:
        self._bootstrap, self._topic, self._take, self._client_id = bootstrap_servers, topic, take, client_id
        self.name = name
        self.caught_up = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._read()
            except Exception as exc:  # a broker blip: read again from the start (taking is idempotent)
                log.warning("%s: reading %s failed (%r); trying again", self.name, self._topic, exc)
                self._stopping.wait(2)

    def _read(self) -> None:
        consumer = standalone_consumer(self._bootstrap, client_id=self._client_id)
        try:
            tps = [TopicPartition(self._topic, p) for p in consumer.partitions_for_topic(self._topic) or ()]
            if not tps:
                self.caught_up.set()  # no topic yet: nothing published to wait for
                self._stopping.wait(2)
                return
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            end = consumer.end_offsets(tps)
            while not self._stopping.is_set():
                for batch in consumer.poll(timeout_ms=500).values():
                    for record in batch:
                        if record.value is not None:
                            self._take(record.value)
                if not self.caught_up.is_set() and all(consumer.position(tp) >= end[tp] for tp in tps):
                    self.caught_up.set()
        finally:
            consumer.close()
