"""A poller whose producer was fenced steps down at once, in every shape kafka-python reports the
fencing in (the broker's error itself, a KafkaError carrying it, one naming it only in its
message), instead of retrying a producer that can never commit again. The ownership itself is
tested on the real broker: tests/integration/test_pollers.py."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from kafka.errors import KafkaError, KafkaTimeoutError, ProducerFencedError

from connectors.base import Cursor, PollingSource, PollResult
from connectors.errors import BackpressureError
from connectors.runtime import pollers
from connectors.runtime.pollers import PollerGroup, _Owned, _PollerOwner, is_fenced
from schemas.topics import TopicNames

pytestmark = pytest.mark.unit


def fenced_producer() -> Any:
    """What kafka-python's producer looks like once fenced: its transaction manager's last error."""
    return SimpleNamespace(_transaction_manager=SimpleNamespace(last_error=ProducerFencedError()))


def test_fencing_is_recognised_in_each_shape_kafka_python_raises_it_in() -> None:
    assert is_fenced(ProducerFencedError())
    # A send after the fencing: the broker's error is an argument of a plain KafkaError.
    assert is_fenced(KafkaError("Cannot perform send because ...", ProducerFencedError()))
    # A later transactional call names it only in its message: the producer's state tells.
    named = KafkaError("Cannot execute transactional method because we are in an error state: [Error 90]")
    assert not is_fenced(named)
    assert is_fenced(named, fenced_producer())
    try:
        raise KafkaError("the transaction did not commit") from ProducerFencedError()
    except KafkaError as chained:
        assert is_fenced(chained)


def test_other_errors_are_not_fencing() -> None:
    healthy = SimpleNamespace(_transaction_manager=SimpleNamespace(last_error=None))
    assert not is_fenced(KafkaTimeoutError("Timeout expired"), healthy)
    assert not is_fenced(KafkaError("the broker is away"), SimpleNamespace())


class Feed(PollingSource):
    name = "feed"
    interval_s = 0.01

    def __init__(self) -> None:
        self.polls = 0
        self.stopped = False

    async def poll(self, cursor: Cursor) -> PollResult:
        self.polls += 1
        return PollResult(events=[], cursor={"next": self.polls}, more=True)

    async def stop(self) -> None:
        self.stopped = True


class FencedProducer:
    """Fenced before its first send: every transactional call fails from then on."""

    def __init__(self) -> None:
        self._transaction_manager = SimpleNamespace(last_error=ProducerFencedError())
        self.calls: list[str] = []

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def send(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append("send")
        raise KafkaError("Cannot perform send because at least one previous request failed", ProducerFencedError())

    def abort_transaction(self) -> None:
        raise KafkaError("Cannot execute transactional method because we are in an error state: [Error 90]")

    def close(self, timeout: float | None = None) -> None:
        self.calls.append("close")


async def test_a_fenced_poller_steps_down_with_one_warning_and_does_not_retry(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    feed, producer = Feed(), FencedProducer()
    group = PollerGroup("127.0.0.1:9", TopicNames("t"), [("feed", feed)])
    owned = _Owned(fenced=asyncio.get_running_loop().create_future())
    owned.caught_up.set()
    owner = _PollerOwner(group, "feed", feed, "feed/feed", 0, owned)
    monkeypatch.setattr(owner, "_producer", lambda: producer)
    monkeypatch.setattr(pollers, "MAX_BACKOFF_S", 0.01)  # a retry, if any, would come at once

    with caplog.at_level(logging.WARNING, logger=pollers.__name__):
        await asyncio.wait_for(owner.run(), 5)

    assert feed.polls == 1 and feed.stopped
    assert producer.calls == ["begin", "send", "close"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["poller feed/feed: fenced by a newer owner; this replica stops polling it"]


class RateLimited(PollingSource):
    """Answered 429 with Retry-After once, then polls fine; the third poll ends the test."""

    name = "limited"
    interval_s = 100.0

    def __init__(self) -> None:
        self.polls = 0

    async def poll(self, cursor: Cursor) -> PollResult:
        self.polls += 1
        if self.polls == 1:
            raise BackpressureError("export: HTTP 429", status=429, retry_after=0.25)
        if self.polls == 3:
            raise asyncio.CancelledError
        return PollResult(events=[], cursor={"next": self.polls}, more=True)


async def test_a_poll_answered_429_waits_its_retry_after_not_the_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The platform said how long: a rate-limited poller resumes after Retry-After (0.25s here),
    not after doubling its 100s interval; only its own task waits."""
    poller = RateLimited()
    group = PollerGroup("127.0.0.1:9", TopicNames("t"), [("limited", poller)])
    owner = _PollerOwner(group, "limited", poller, "limited/limited", 0, _Owned(fenced=asyncio.Future()))
    monkeypatch.setattr(owner, "_commit", lambda producer, result: None)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(pollers.asyncio, "sleep", sleep)

    with pytest.raises(asyncio.CancelledError):
        await owner._loop(SimpleNamespace(), None)  # type: ignore[arg-type]

    assert poller.polls == 3 and waits == [0.25]
    owner.executor.shutdown(wait=False)
