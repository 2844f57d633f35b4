"""Consumer lag as the sinks report it: commands waiting behind a busy key count, and the gauge
falls back to 0 once they are done."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from prometheus_client import REGISTRY

from connectors.runtime import sinks
from connectors.runtime.kafka import KafkaPublisher
from connectors.runtime.sinks import SinkRunner
from schemas.commands import Command
from schemas.envelope import Envelope
from schemas.outcomes import Effect
from schemas.topics import TopicNames
from tests.integration.test_sink_runtime import ScriptedSink, fetch

pytestmark = pytest.mark.integration


class HeldSink(ScriptedSink):
    """Holds every command until released, so the ones behind it wait on their key."""

    def __init__(self) -> None:
        super().__init__({})
        self.release = asyncio.Event()

    async def execute(self, command: Command, envelope: Envelope[Command]) -> Effect:
        await self.release.wait()
        return await super().execute(command, envelope)


def lag(connector: str) -> float | None:
    return REGISTRY.get_sample_value("threadlink_sink_consumer_lag_records", {"connector": connector})


async def test_sink_lag_counts_commands_not_done_and_returns_to_zero(
    kafka_bootstrap: str, sink_topics: TopicNames, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sinks, "LAG_INTERVAL_S", 0.2)
    publisher = KafkaPublisher(kafka_bootstrap, client_id="tests")
    batch = [fetch(f"LAG-{i}") for i in range(25)]
    for envelope in batch:  # one key: each waits for the one before it
        await publisher.publish(sink_topics.commands("echo"), "one-thread", envelope)
    sink = HeldSink()
    runner = SinkRunner(
        "echo", sink, bootstrap_servers=kafka_bootstrap, topics=sink_topics, publisher=publisher, client_id="tests"
    )
    await runner.start()
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(60):
            while lag("echo") != 25:
                await asyncio.sleep(0.1)
            sink.release.set()
            while len(sink.executed) < 25:
                await asyncio.sleep(0.1)
            while lag("echo") != 0:
                await asyncio.sleep(0.1)
    finally:
        runner.stop()
        with contextlib.suppress(Exception):
            await task
        publisher.close()
