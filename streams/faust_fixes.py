"""Two changes to faust-streaming (0.15.x, aiokafka driver) that threadlink carries until
upstream has them. `install()` applies both; `streams.app.create_app` calls it. Each is tested
on the real broker (tests/integration/test_streams_restart.py, test_streams_isolation.py), and
docs/upstream/faust.md is the note for the maintainers.

1. A restarted or rebalanced worker silently skipped records that were waiting for it
   (faust-streaming issues #216, #312, #606 are of this class). When table recovery ends,
   `Recovery.on_recovery_completed` resumes the stream partitions and only then awaits
   `Consumer.perform_seek()`, with the consumer's flow still active: the fetcher keeps handing
   records to the streams while the seek runs. The seek then rewinds the fetch position and
   resets the read offsets under the fetcher's feet, and `flow_control.resume()` afterwards
   discards every event still queued. Records were lost three ways: dropped from the queues with
   the read offset already past them; re-fetched copies dropped as "already read"; and the
   stretch between the reset read offset and the rest of the old batch recorded as a gap (which
   Faust treats as done) and committed. Seen in 24 of 33 runs with the memory store and 7 of 18
   with RocksDB (a worker started with 2,000 messages waiting); none in 42 runs with this fix.

   The fix makes `perform_seek` atomic with respect to the fetcher: it stops the flow first (so
   `getmany` hands out nothing more: it checks `flow_active` before each record), waits until
   the record the drain loop has in hand is delivered or abandoned, then seeks and sets the
   read offsets; partitions with no committed offset (aiokafka's `seek_to_committed` skips
   them) go back to the beginning when `consumer_auto_offset_reset` is "earliest", as at
   assignment, since records of theirs may have been handed out and are about to be discarded.
   It leaves the flow stopped: both callers call `app.flow_control.resume()` (which empties the
   stream queues of what was fetched before the seek) and then `consumer.resume_flow()`, with no
   await in between, so nothing fetched after the seek can be discarded.

2. Faust reads with `read_committed` only under its exactly-once guarantee. threadlink's
   pollers publish a poll's events and its cursor in one Kafka transaction, so a poll that was
   cut off is aborted, and its events must never reach the flows: the worker's consumer reads
   committed records only, whatever the guarantee.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from faust.transport.consumer import Consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.drivers.aiokafka import ensure_aiokafka_TP

_INSTALLED = "_threadlink_fixes_installed"


def install() -> None:
    """Idempotent; call before the app starts."""
    if getattr(Consumer, _INSTALLED, False):
        return
    setattr(Consumer, _INSTALLED, True)
    _seek_atomically()
    _read_committed()


def _seek_atomically() -> None:
    original_getmany = Consumer.getmany

    async def getmany(self: Any, timeout: float) -> AsyncIterator[Any]:
        # The drain loop handles each record while this generator waits at the yield, and asks
        # for the next one only once it delivered (or gave up) this one and set its read offset.
        try:
            async for item in original_getmany(self, timeout):
                self._threadlink_draining = True
                yield item
                self._threadlink_draining = False
        finally:
            self._threadlink_draining = False

    async def perform_seek(self: Any) -> None:
        self.stop_flow()
        while getattr(self, "_threadlink_draining", False) and not self.should_stop:
            await asyncio.sleep(0.001)
        committed = await self.seek_to_committed()
        never_committed = [tp for tp, offset in committed.items() if not offset]
        if never_committed and self.app.conf.consumer_auto_offset_reset == "earliest":
            await self._thread.seek_to_beginning(*(ensure_aiokafka_TP(tp) for tp in never_committed))
        self._read_offset.update(
            {tp: offset if offset is not None and offset >= 0 else None for tp, offset in committed.items()}
        )
        self._committed_offset.update({tp: offset or None for tp, offset in committed.items() if offset is not None})

    Consumer.getmany = getmany  # type: ignore[method-assign]
    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]


def _read_committed() -> None:
    thread = faust_aiokafka.AIOKafkaConsumerThread
    original = thread._create_worker_consumer
    aiokafka = faust_aiokafka.aiokafka

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer_class = aiokafka.AIOKafkaConsumer

        def read_committed(*args: Any, **kwargs: Any) -> Any:
            return consumer_class(*args, **{**kwargs, "isolation_level": "read_committed"})

        # Only for this call: the driver builds its consumer with aiokafka's class by name.
        aiokafka.AIOKafkaConsumer = read_committed
        try:
            return original(self, transport)
        finally:
            aiokafka.AIOKafkaConsumer = consumer_class

    thread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]
