"""Runs stream sources (long-lived clients: MQTT, OPC UA): connect, run, and on connection
loss disconnect, back off with jitter and connect again, until shutdown. See
connectors.base.StreamSource for the lifecycle this implements."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

from connectors.base import ConnectionLost, StreamSource
from connectors.runtime.batching import BatchedPublisher
from connectors.runtime.metrics import STREAM_RECONNECTS
from schemas.envelope import Envelope

log = logging.getLogger(__name__)

#: How long shutdown waits for what was emitted to be acknowledged.
FLUSH_TIMEOUT_S = 15.0


class _CountingEmit:
    """The source's `emit`: the batched publisher, noting that this connection delivered."""

    def __init__(self, publisher: BatchedPublisher) -> None:
        self._publisher = publisher
        self.emitted = 0

    async def __call__(self, topic: str, key: str, envelope: Envelope[Any]) -> asyncio.Future[None]:
        delivery = await self._publisher(topic, key, envelope)
        self.emitted += 1
        return delivery

    async def flush(self) -> None:
        await self._publisher.flush()


class StreamRunner:
    """One stream source's task. `await run()` until cancelled."""

    def __init__(self, connector: str, source: StreamSource, publisher: BatchedPublisher) -> None:
        self.connector = connector
        self.source = source
        self.publisher = publisher
        self.connections = 0

    @property
    def label(self) -> str:
        return f"{self.connector}/{self.source.name}"

    async def run(self) -> None:
        await self.source.start()
        delay = self.source.reconnect_initial_s
        try:
            while True:
                emit = _CountingEmit(self.publisher)
                try:
                    await self.source.connect()
                    self.connections += 1
                    log.info("stream %s: connected", self.label)
                    await self.source.run(emit)
                    log.info("stream %s: the connection ended; reconnecting", self.label)
                except (ConnectionLost, OSError) as exc:
                    log.warning("stream %s: connection lost (%s)", self.label, exc or type(exc).__name__)
                except Exception:  # a bug in the source: it is restarted, not the process
                    log.exception("stream %s failed", self.label)
                finally:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self.source.disconnect())
                if emit.emitted:  # that connection worked: the next failure starts the backoff anew
                    delay = self.source.reconnect_initial_s
                STREAM_RECONNECTS.labels(self.connector).inc()
                wait = delay * random.uniform(0.5, 1.0)  # jitter: replicas do not reconnect in step
                log.info("stream %s: reconnecting in %.1fs", self.label, wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.source.reconnect_max_s)
        finally:
            await asyncio.shield(self._wind_down())

    async def _wind_down(self) -> None:
        try:
            async with asyncio.timeout(FLUSH_TIMEOUT_S):
                await self.publisher.flush()
        except Exception as exc:  # unacknowledged events were not acknowledged upstream either
            log.warning("stream %s: not everything emitted was acknowledged before shutdown: %r", self.label, exc)
        with contextlib.suppress(Exception):
            await self.source.stop()
        self.publisher.close()
