"""The connector host runs pollers on their interval, backs off on retriable errors, and
stops promptly."""

from __future__ import annotations

import asyncio
import time

import pytest

from connectors.base import PollingSource
from connectors.errors import RetriableError
from connectors.runtime.host import ConnectorHost
from threadlink.config import Settings

pytestmark = pytest.mark.integration


class FlakyPoller(PollingSource):
    interval_s = 0.05

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def poll(self) -> None:
        self.calls.append(time.monotonic())
        if len(self.calls) == 2:
            raise RetriableError("HTTP 503")
        if len(self.calls) == 3:
            raise ValueError("a bug in a poller must not stop the others")


async def test_pollers_run_back_off_and_stop(kafka_bootstrap: str) -> None:
    host = ConnectorHost(Settings(kafka={"bootstrap_servers": kafka_bootstrap}, http={"port": 0}))
    poller = FlakyPoller()
    task = asyncio.create_task(host._poll_forever("flaky", poller))
    async with asyncio.timeout(30):
        while len(poller.calls) < 5:
            await asyncio.sleep(0.02)
    gaps = [b - a for a, b in zip(poller.calls, poller.calls[1:], strict=False)]
    assert gaps[1] >= 2 * poller.interval_s * 0.9  # after the 503: doubled interval
    started = time.monotonic()
    await host.stop()
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 5
