"""Hosts the configured connectors in one process: their webhook sources on one HTTP server,
their pollers (one consumer-group member for all of them), their stream sources, and their
sinks. `threadlink connectors run` starts it."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from dataclasses import dataclass, field

from aiohttp import web

from connectors.base import ConnectorContext, ConnectorParts
from connectors.registry import plugin_for
from connectors.runtime.batching import BatchedPublisher
from connectors.runtime.kafka import KafkaPublisher
from connectors.runtime.pollers import PollerGroup
from connectors.runtime.recent import published_ids
from connectors.runtime.sinks import SinkRunner
from connectors.runtime.streaming import StreamRunner
from connectors.runtime.webhooks import DeadLetters, HttpLimits, build_app, webhook_path
from threadlink.config import Settings, connector_config

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 20.0


@dataclass
class ConnectorHost:
    settings: Settings
    only: set[str] | None = None
    run_webhooks: bool = True
    run_sinks: bool = True
    parts: dict[str, ConnectorParts] = field(default_factory=dict)
    port: int | None = None

    def __post_init__(self) -> None:
        kafka = self.settings.kafka
        if not kafka.bootstrap_servers:
            raise ValueError("kafka.bootstrap_servers is not set")
        self.publisher = KafkaPublisher(kafka.bootstrap_servers, client_id=f"{kafka.client_id}-connectors")
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._runners: list[SinkRunner] = []
        self._site_runner: web.AppRunner | None = None
        self._pollers: PollerGroup | None = None
        self._streams: list[asyncio.Task[None]] = []
        """Run until cancelled (they reconnect on their own), so not among `_tasks`."""
        for name, entry in self.settings.connectors.items():
            if not entry.enabled or (self.only and name not in self.only):
                continue
            plugin = plugin_for(entry.type or name)
            assert plugin is not None  # load_settings validated the type
            context = ConnectorContext(
                name=name,
                topics=kafka.topics,
                publisher=self.publisher.labelled(name),
                published_lately=functools.partial(
                    published_ids, kafka.bootstrap_servers, client_id=f"{kafka.client_id}-recent-{name}"
                ),
            )
            self.parts[name] = plugin.build(connector_config(self.settings, name), context)

    async def start(self) -> None:
        kafka = self.settings.kafka
        sources = [(name, s) for name, p in self.parts.items() for s in p.webhooks] if self.run_webhooks else []
        for _, source in sources:
            await source.start()
        if self.run_sinks:
            for name, parts in self.parts.items():
                if parts.sink is None:
                    continue
                runner = SinkRunner(
                    name,
                    parts.sink,
                    bootstrap_servers=kafka.bootstrap_servers or "",
                    topics=kafka.topics,
                    publisher=self.publisher.labelled(name),
                    client_id=f"{kafka.client_id}-sink-{name}",
                )
                await runner.start()
                self._runners.append(runner)
                self._tasks.append(asyncio.create_task(runner.run(), name=f"sink-{name}"))
        pollers = [(name, poller) for name, parts in self.parts.items() for poller in parts.pollers]
        if pollers:
            self._pollers = PollerGroup(
                kafka.bootstrap_servers or "", kafka.topics, pollers, client_id=f"{kafka.client_id}-pollers"
            )
            await self._pollers.start()
            self._tasks.append(asyncio.create_task(self._pollers.run(), name="pollers"))
        for name, parts in self.parts.items():
            for stream in parts.streams:
                streamer = StreamRunner(name, stream, BatchedPublisher(self.publisher, connector=name))
                self._streams.append(asyncio.create_task(streamer.run(), name=f"stream-{name}/{stream.name}"))
        http = self.settings.http
        app = build_app(
            sources,
            dead_letters=DeadLetters(self.publisher, kafka.topics),
            limits=HttpLimits(read_timeout_s=http.body_read_timeout_s, max_concurrent=http.max_concurrent_requests),
        )
        self._site_runner = web.AppRunner(app, access_log=None)
        await self._site_runner.setup()
        site = web.TCPSite(self._site_runner, self.settings.http.host, self.settings.http.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.settings.http.port
        for name, source in sources:
            for route in source.routes:
                url = f"http://{http.host}:{self.port}{webhook_path(name, route)}"
                log.info("webhook %s: %s %s", name, route.method, url)
        log.info(
            "connectors running: %s (metrics on http://%s:%s/metrics)",
            ", ".join(self.parts) or "none",
            self.settings.http.host,
            self.port,
        )

    async def stop(self) -> None:
        self._stop.set()
        if self._site_runner is not None:
            await self._site_runner.cleanup()
        for runner in self._runners:
            runner.stop()
        if self._pollers is not None:
            self._pollers.stop()
        for stream in self._streams:
            stream.cancel()  # each flushes what it emitted before it ends
        await asyncio.gather(*self._streams, return_exceptions=True)
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)
            for task in late:  # a sink deep in retries: its offsets are not committed, nothing is lost
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for parts in self.parts.values():
            for source in parts.webhooks:
                await source.stop()
        await asyncio.get_running_loop().run_in_executor(None, self.publisher.close)

    async def serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
        await self.start()
        try:
            failed = asyncio.create_task(self._first_failure())
            await asyncio.wait([failed, asyncio.create_task(self._stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        finally:
            await self.stop()

    async def _first_failure(self) -> None:
        """A sink loop that dies takes the process down, so a supervisor restarts it."""
        if not self._tasks:
            await self._stop.wait()
            return
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                log.error("%s stopped: %r", task.get_name(), task.exception())
                self._stop.set()
