"""A connector as the runtime deploys it, on the real broker, for a test: topics of a namespace of
the test's own, the connector built through its registry plugin with a real KafkaPublisher, its
webhooks served by the runtime's HTTP app, and its sink run by a SinkRunner on demand."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from aiohttp.test_utils import TestServer

from connectors.base import ConnectorContext, ConnectorParts
from connectors.registry import plugin_for
from connectors.runtime.kafka import KafkaPublisher
from connectors.runtime.sinks import SinkRunner
from connectors.runtime.webhooks import DeadLetters, build_app, webhook_path
from schemas.topics import TopicNames
from threadlink.config import Settings
from threadlink.topics_admin import apply_topics


@dataclass
class Deployment:
    name: str
    topics: TopicNames
    publisher: KafkaPublisher
    config: Any
    ctx: ConnectorContext
    parts: ConnectorParts
    server: TestServer
    bootstrap: str

    @property
    def webhook_url(self) -> str:
        return str(self.server.make_url(webhook_path(self.name, self.parts.webhooks[0])))

    @contextlib.asynccontextmanager
    async def sink_running(self) -> AsyncIterator[SinkRunner]:
        """The connector's sink consuming its commands topic, until the block ends."""
        assert self.parts.sink is not None
        runner = SinkRunner(
            self.name,
            self.parts.sink,
            bootstrap_servers=self.bootstrap,
            topics=self.topics,
            publisher=self.publisher,
            client_id=f"tests-{self.name}",
        )
        await runner.start()
        task = asyncio.create_task(runner.run())
        try:
            yield runner
        finally:
            runner.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 60)


@contextlib.asynccontextmanager
async def deploy(
    name: str, entry: Mapping[str, Any], *, bootstrap: str, namespace: str, test_name: str
) -> AsyncIterator[Deployment]:
    """`entry` is the connector's threadlink.yaml entry (with its `type`)."""
    suffix = re.sub(r"[^a-z0-9]", "", test_name.lower())[-24:]
    settings = Settings(
        kafka={"bootstrap_servers": bootstrap, "namespace": f"{namespace}-{name[:4]}-{suffix}"},
        connectors={name: dict(entry)},
    )
    await asyncio.to_thread(apply_topics, settings)
    topics = settings.kafka.topics
    publisher = KafkaPublisher(bootstrap, client_id=f"tests-{name}")
    plugin = plugin_for(str(entry.get("type", name)))
    assert plugin is not None
    config = plugin.config_model.model_validate({k: v for k, v in entry.items() if k != "type"})
    ctx = ConnectorContext(name, topics, publisher.labelled(name))
    parts = plugin.build(config, ctx)
    started: list[Any] = []
    server: TestServer | None = None
    try:
        for source in parts.webhooks:
            await source.start()
            started.append(source)
        app = build_app([(name, s) for s in parts.webhooks], dead_letters=DeadLetters(publisher, topics))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        yield Deployment(name, topics, publisher, config, ctx, parts, server, bootstrap)
    finally:
        if server is not None:
            await server.close()
        for source in reversed(started):
            await source.stop()
        if parts.sink is not None:
            await parts.sink.stop()
        await asyncio.to_thread(publisher.close)


def as_fields(deployment: Deployment) -> dict[str, Any]:
    """A deployment's fields, to build a test's own subclass (one with its fake vendor) from it."""
    return {f.name: getattr(deployment, f.name) for f in fields(deployment)}
