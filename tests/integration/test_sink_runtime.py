"""The sink runtime on the real broker: once-only side effects, retries, dead letters."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.base import Sink
from connectors.errors import FatalError, RetriableError
from connectors.runtime import sinks
from connectors.runtime.kafka import KafkaPublisher, PublishError
from connectors.runtime.retry import RetryPolicy
from connectors.runtime.sinks import SinkRunner
from schemas import events
from schemas.commands import Command, FetchRecord, command_id_for
from schemas.deadletters import DeadLetter
from schemas.envelope import Envelope
from schemas.ledger import LedgerEntry
from schemas.outcomes import Effect
from schemas.records import RecordRef
from schemas.topics import SINK_PARTITIONS, TopicNames
from tests.integration.kafka_helpers import envelopes, partition_of, run_until
from threadlink.config import Settings

pytestmark = pytest.mark.integration


class ScriptedSink(Sink):
    """Counts executions; fails as told per record key."""

    def __init__(self, failures: dict[str, list[Exception]]) -> None:
        self.failures = failures
        self.executed: list[str] = []
        self.unknown: list[str] = []

    def outcome_unknown(self, command_id: str) -> None:
        self.unknown.append(command_id)

    async def execute(self, command: Command, envelope: Envelope[Command]) -> Effect:
        script = self.failures.get(command.record.key, [])  # type: ignore[union-attr]
        if script:
            raise script.pop(0)
        self.executed.append(command.command_id)
        return Effect(found=True)


@pytest.fixture
def topics(sink_topics: TopicNames) -> TopicNames:
    return sink_topics


def fetch(key: str, salt: str = "") -> Envelope[Command]:
    command = FetchRecord(
        command_id=command_id_for("fetch_record", key, salt), target="echo", record=RecordRef(system="jira", key=key)
    )
    return Envelope.wrap(command, type=events.COMMAND.format(kind="fetch_record"), source_system="tests")


async def test_each_command_is_done_once_even_when_delivered_twice(kafka_bootstrap: str, topics: TopicNames) -> None:
    publisher = KafkaPublisher(kafka_bootstrap, client_id="tests")
    twice, sentinel = fetch("A-1"), fetch("A-9")
    for envelope in (twice, twice, fetch("A-2"), sentinel):  # one key: carried out in this order
        await publisher.publish(topics.commands("echo"), "k", envelope)
    sink = ScriptedSink({})
    runner = SinkRunner(
        "echo", sink, bootstrap_servers=kafka_bootstrap, topics=topics, publisher=publisher, client_id="tests"
    )
    await run_until(runner, lambda: sentinel.data.command_id in sink.executed)
    assert sink.executed == [twice.data.command_id, fetch("A-2").data.command_id, sentinel.data.command_id]

    # A restarted sink reads the ledger and does not do them again.
    await publisher.publish(topics.commands("echo"), "k", twice)
    await publisher.publish(topics.commands("echo"), "k", fetch("A-3"))
    again = ScriptedSink({})
    runner = SinkRunner(
        "echo", again, bootstrap_servers=kafka_bootstrap, topics=topics, publisher=publisher, client_id="tests"
    )
    await run_until(runner, lambda: again.executed)
    assert again.executed == [fetch("A-3").data.command_id]
    ledger = envelopes(kafka_bootstrap, topics.ledger, LedgerEntry)
    assert {e.data.command_id for e in ledger} >= {twice.data.command_id, fetch("A-3").data.command_id}
    publisher.close()


async def test_retriable_errors_are_retried_and_fatal_ones_dead_lettered(
    kafka_bootstrap: str, topics: TopicNames
) -> None:
    publisher = KafkaPublisher(kafka_bootstrap, client_id="tests")
    await publisher.publish(topics.commands("echo"), "k", fetch("FLAKY-1"))
    await publisher.publish(topics.commands("echo"), "k", fetch("BROKEN-1"))
    await publisher.publish_raw(topics.commands("echo"), "k", b"{not json", [])
    await publisher.publish(topics.commands("echo"), "k", fetch("OK-1"))
    sink = ScriptedSink(
        {
            "FLAKY-1": [RetriableError("503", retry_after=0.2), RetriableError("timeout")],
            "BROKEN-1": [FatalError("jira: HTTP 401")],
        }
    )
    runner = SinkRunner(
        "echo",
        sink,
        bootstrap_servers=kafka_bootstrap,
        topics=topics,
        publisher=publisher,
        client_id="tests",
        retry=RetryPolicy(initial_backoff_s=0.05, max_backoff_s=0.2),
    )
    await run_until(runner, lambda: len(sink.executed) >= 2)
    assert sink.executed == [fetch("FLAKY-1").data.command_id, fetch("OK-1").data.command_id]
    letters = [e.data for e in envelopes(kafka_bootstrap, topics.dead_letters, DeadLetter)]
    assert [(d.error_kind, d.reason) for d in letters] == [("fatal", "jira: HTTP 401"), ("invalid", letters[1].reason)]
    assert letters[1].value == "{not json"
    assert letters[0].topic == topics.commands("echo")
    publisher.close()


async def test_retry_budget_exhausted_goes_to_dead_letters(kafka_bootstrap: str, topics: TopicNames) -> None:
    publisher = KafkaPublisher(kafka_bootstrap, client_id="tests")
    await publisher.publish(topics.commands("echo"), "k", fetch("DOWN-1"))
    await publisher.publish(topics.commands("echo"), "k", fetch("OK-2"))
    sink = ScriptedSink({"DOWN-1": [RetriableError("HTTP 503")] * 10})
    runner = SinkRunner(
        "echo",
        sink,
        bootstrap_servers=kafka_bootstrap,
        topics=topics,
        publisher=publisher,
        client_id="tests",
        retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02),
    )
    await run_until(runner, lambda: sink.executed)
    letters = [e.data for e in envelopes(kafka_bootstrap, topics.dead_letters, DeadLetter)]
    assert [(d.error_kind, d.attempts) for d in letters] == [("retries_exhausted", 3)]
    assert sink.executed == [fetch("OK-2").data.command_id]
    publisher.close()


async def test_dead_letters_are_replayed_once_after_the_fix(kafka_bootstrap: str, topics: TopicNames) -> None:
    from threadlink.deadletters import replay

    publisher = KafkaPublisher(kafka_bootstrap, client_id="tests")
    await publisher.publish(topics.commands("echo"), "k", fetch("AUTH-1"))
    await publisher.publish(topics.commands("echo"), "k", fetch("OK-3"))
    sink = ScriptedSink({"AUTH-1": [FatalError("HTTP 401")]})
    settings = Settings(kafka={"bootstrap_servers": kafka_bootstrap, "namespace": topics.namespace})
    runner = SinkRunner(
        "echo", sink, bootstrap_servers=kafka_bootstrap, topics=topics, publisher=publisher, client_id="tests"
    )
    await run_until(runner, lambda: sink.executed)
    assert sink.executed == [fetch("OK-3").data.command_id]

    # The token was fixed: replay, and the command is done this time; a second replay finds nothing new.
    report = await asyncio.to_thread(replay, settings)
    assert [letter.reason for letter in report.replayed] == ["HTTP 401"]
    assert (await asyncio.to_thread(replay, settings)).replayed == []
    runner = SinkRunner(
        "echo", sink, bootstrap_servers=kafka_bootstrap, topics=topics, publisher=publisher, client_id="tests"
    )
    await run_until(runner, lambda: len(sink.executed) == 2)
    assert sink.executed[1] == fetch("AUTH-1").data.command_id
    publisher.close()


async def test_a_command_started_before_a_crash_is_flagged_outcome_unknown(
    kafka_bootstrap: str, topics: TopicNames
) -> None:
    publisher = KafkaPublisher(kafka_bootstrap, client_id="tests")
    crashed, fresh = fetch("CRASH-1"), fetch("NEW-1")
    # What a sink that died during the API call leaves behind: an `attempted` entry, no `done`,
    # in the ledger partition numbered like the command's.
    attempted = LedgerEntry(command_id=crashed.data.command_id, target="echo", state="attempted", at=datetime.now(UTC))
    await publisher.publish(
        topics.ledger,
        attempted.command_id,
        Envelope.wrap(attempted, type=events.LEDGER_DONE, source_system="tests"),
        partition=partition_of("k", SINK_PARTITIONS),
    )
    for envelope in (crashed, fresh):
        await publisher.publish(topics.commands("echo"), "k", envelope)
    sink = ScriptedSink({})
    runner = SinkRunner(
        "echo", sink, bootstrap_servers=kafka_bootstrap, topics=topics, publisher=publisher, client_id="tests"
    )
    await run_until(runner, lambda: len(sink.executed) == 2)
    assert sink.unknown == [crashed.data.command_id]  # the sink is told to look before acting
    ledger = envelopes(kafka_bootstrap, topics.ledger, LedgerEntry)

    def states(command: Envelope[Command]) -> list[str]:
        return [e.data.state for e in ledger if e.data.command_id == command.data.command_id]

    assert states(crashed) == ["attempted", "attempted", "done"]  # the crash's, then this run's
    assert states(fresh) == ["attempted", "done"]
    publisher.close()


async def test_replaying_one_consumers_letters_leaves_the_others_replayable(
    kafka_bootstrap: str, topics: TopicNames
) -> None:
    from connectors.runtime.deadletter import send_to_dead_letters
    from threadlink.deadletters import replay

    publisher = KafkaPublisher(kafka_bootstrap, client_id="tests")
    settings = Settings(kafka={"bootstrap_servers": kafka_bootstrap, "namespace": topics.namespace})
    for consumer in ("sink.slack", "sink.jira"):
        letter = DeadLetter(
            topic=topics.commands("echo"),
            partition=0,
            offset=1,
            key="k",
            value="{}",
            error_kind="fatal",
            reason=f"{consumer} down",
            consumer=consumer,
            failed_at=datetime.now(UTC),
        )
        await send_to_dead_letters(publisher, topics, letter)
    publisher.close()
    first = await asyncio.to_thread(replay, settings, consumer="sink.jira")
    assert [letter.consumer for letter in first.replayed] == ["sink.jira"] and first.complete
    second = await asyncio.to_thread(replay, settings, consumer="sink.slack")
    assert [letter.consumer for letter in second.replayed] == ["sink.slack"]


class LedgerOutage(KafkaPublisher):
    """The real publisher, except that the first `failures` writes to the ledger are refused, as
    while the broker is away."""

    def __init__(self, bootstrap: str, ledger: str, failures: int) -> None:
        super().__init__(bootstrap, client_id="tests")
        self.ledger, self.failures, self.refused = ledger, failures, 0

    async def publish(self, topic: str, key: str, envelope: Envelope[Any], *, partition: int | None = None) -> None:
        if topic == self.ledger and self.refused < self.failures:
            self.refused += 1
            raise PublishError("broker did not acknowledge: KafkaTimeoutError")
        await super().publish(topic, key, envelope, partition=partition)


async def test_a_broker_outage_longer_than_the_sinks_retry_budget_stalls_nothing(
    kafka_bootstrap: str, topics: TopicNames, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger writes of one command fail more often than the sink's API retries allow: the
    runner waits the outage out instead of giving up, then carries out what follows on the key."""
    monkeypatch.setattr(
        sinks,
        "BROKER_RETRY",
        RetryPolicy(max_attempts=2**31 - 1, max_total_s=float("inf"), initial_backoff_s=0.01, max_backoff_s=0.05),
    )
    publisher = LedgerOutage(kafka_bootstrap, topics.ledger, failures=12)
    await publisher.publish(topics.commands("echo"), "k", fetch("OUT-1"))
    await publisher.publish(topics.commands("echo"), "k", fetch("OUT-2"))
    sink = ScriptedSink({})
    runner = SinkRunner(
        "echo",
        sink,
        bootstrap_servers=kafka_bootstrap,
        topics=topics,
        publisher=publisher,
        client_id="tests",
        retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02),
    )
    await run_until(runner, lambda: len(sink.executed) == 2)
    assert publisher.refused == 12
    assert sink.executed == [fetch("OUT-1").data.command_id, fetch("OUT-2").data.command_id]
    done = [e.data.command_id for e in envelopes(kafka_bootstrap, topics.ledger, LedgerEntry) if e.data.state == "done"]
    assert sorted(done) == sorted(sink.executed)
    assert [e for e in envelopes(kafka_bootstrap, topics.dead_letters, DeadLetter)] == []
    publisher.close()
