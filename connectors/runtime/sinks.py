"""Runs one connector's Sink: consume its commands topic, do each command once, dead-letter
what fails, commit only after the outcome is durable."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata
from pydantic import TypeAdapter, ValidationError

from connectors.base import Sink
from connectors.errors import ConnectorError, RetriableError
from connectors.runtime import metrics
from connectors.runtime.deadletter import send_to_dead_letters
from connectors.runtime.kafka import KafkaPublisher, read_to_end
from connectors.runtime.retry import RetryPolicy
from schemas import events
from schemas.commands import Command
from schemas.deadletters import DeadLetter
from schemas.envelope import Envelope, utcnow
from schemas.ledger import LedgerEntry
from schemas.outcomes import Effect, ErrorKind, Outcome
from schemas.records import RecordBase, RecordRef
from schemas.topics import TopicNames

log = logging.getLogger(__name__)

COMMAND_ENVELOPE = TypeAdapter(Envelope[Command])
LEDGER_ENVELOPE = TypeAdapter(Envelope[LedgerEntry])


class SinkRunner:
    """Lifecycle: `await start()` loads the ledger and subscribes; `await run()` loops until
    `stop()`; the runner then closes its consumer. All consumer calls happen on one thread
    (kafka-python consumers are not thread-safe)."""

    def __init__(
        self,
        name: str,
        sink: Sink,
        *,
        bootstrap_servers: str,
        topics: TopicNames,
        publisher: KafkaPublisher,
        client_id: str,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.name = name
        self.sink = sink
        self.topics = topics
        self.publisher = publisher
        self.retry = retry or getattr(sink, "retry_policy", None) or RetryPolicy()
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sink-{name}")
        self._consumer: KafkaConsumer | None = None
        self._ledger: dict[str, Effect] = {}
        self._attempted: set[str] = set()
        """Started, never recorded as done: the outcome is unknown."""
        self._stopping = asyncio.Event()
        self._reload_ledger = False
        """Set by the rebalance listener: partitions came from another instance."""

    @property
    def group_id(self) -> str:
        return f"{self.topics.namespace}.sink.{self.name}"

    async def start(self) -> None:
        await self._in_thread(self._load_ledger)
        self._consumer = await self._in_thread(self._subscribe)
        await self.sink.start()
        log.info(
            "sink %s: consuming %s (ledger: %d done commands)",
            self.name,
            self.topics.commands(self.name),
            len(self._ledger),
        )

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        try:
            while not self._stopping.is_set():
                batches = await self._in_thread(self._poll)
                if self._reload_ledger:
                    self._reload_ledger = False
                    await self._in_thread(self._load_ledger)
                await self._handle_batches(batches)
        finally:
            await self.sink.stop()
            await self._in_thread(self._close)
            self._executor.shutdown(wait=False)

    async def _handle_batches(self, batches: dict[TopicPartition, list[Any]]) -> None:
        """One record at a time, each committed once its outcome is durable, so a slow batch
        never holds done work uncommitted. A failed commit means the partitions went to
        another instance: stop here, that instance carries on from the last commit."""
        for partition, records in batches.items():
            for record in records:
                if self._stopping.is_set():
                    return  # not handled, not committed: the next start re-reads it
                await self._handle(record)
                if not await self._in_thread(self._commit, {partition: record.offset + 1}):
                    return

    # -- one command ---------------------------------------------------------------------

    async def _handle(self, record: Any) -> None:
        try:
            envelope = COMMAND_ENVELOPE.validate_json(record.value)
        except ValidationError as exc:
            await self._dead_letter(record, "invalid", f"not a command envelope: {exc.error_count()} problem(s)")
            return
        command = envelope.data
        if command.command_id in self._ledger:
            metrics.SINK_COMMANDS.labels(self.name, command.kind, "duplicate").inc()
            # Said again: the flow that re-emitted it may not have heard the first time.
            await self._report(envelope, record, "done", effect=self._ledger[command.command_id], redelivered=True)
            return
        started = time.perf_counter()
        attempts = 0
        if command.command_id in self._attempted:
            self.sink.outcome_unknown(command.command_id)

        # Recorded before the side effect: a crash during it leaves the outcome known to be unknown.
        async def record_attempt() -> None:
            await self._record(command.command_id, "attempted", None, envelope.traceparent)

        await self.retry.call(record_attempt)

        async def attempt() -> Effect:
            nonlocal attempts
            attempts += 1
            return await self.sink.execute(command, envelope)

        def on_retry(state: Any) -> None:
            metrics.SINK_RETRIES.labels(self.name, command.kind).inc()
            log.warning(
                "sink %s: %s %s: %s; retrying", self.name, command.kind, command.command_id, state.outcome.exception()
            )

        failure: tuple[ErrorKind, str] | None = None
        try:
            effect = await self.retry.call(attempt, on_retry=on_retry)
        except RetriableError as exc:
            failure = ("retries_exhausted", str(exc))
        except ConnectorError as exc:
            failure = ("skippable" if exc.kind == "skippable" else "fatal", str(exc))
        except Exception as exc:  # a bug in a sink must not stop the partition or lose the command
            log.exception("sink %s: %s failed unexpectedly", self.name, command.kind)
            failure = ("fatal", f"unexpected {type(exc).__name__}")
        if failure is not None:
            await self._dead_letter(record, failure[0], failure[1], attempts)
            await self._report(envelope, record, "failed", error_kind=failure[0], reason=failure[1])
            metrics.SINK_COMMANDS.labels(self.name, command.kind, "dead_lettered").inc()
            return

        # The side effect happened: the ledger write is retried on its own, never the effect again.
        async def remember() -> None:
            await self._record(command.command_id, "done", effect, envelope.traceparent)

        await self.retry.call(remember)
        await self._report(envelope, record, "done", effect=effect)
        metrics.SINK_COMMANDS.labels(self.name, command.kind, "done").inc()
        metrics.SINK_SECONDS.labels(self.name, command.kind).observe(time.perf_counter() - started)
        metrics.END_TO_END_SECONDS.labels(self.name, command.kind).observe(
            max(0.0, (utcnow() - envelope.occurred_at).total_seconds())
        )

    async def _report(
        self,
        envelope: Envelope[Command],
        record: Any,
        status: Any,
        *,
        effect: Effect | None = None,
        error_kind: ErrorKind | None = None,
        reason: str | None = None,
        redelivered: bool = False,
    ) -> None:
        """The command's outcome, to the flows that sent it (retried through broker blips)."""
        command = envelope.data
        about = getattr(command, "record", None)
        outcome = Outcome(
            command_id=command.command_id,
            command_kind=command.kind,
            target=self.name,
            status=status,
            effect=effect,
            error_kind=error_kind,
            reason=reason,
            destination=getattr(command, "destination", None),
            record=about.ref if isinstance(about, RecordBase) else about if isinstance(about, RecordRef) else None,
            version=about.version if isinstance(about, RecordBase) else None,
            redelivered=redelivered,
            completed_at=utcnow(),
        )
        key = command.reply_key or (record.key.decode() if isinstance(record.key, bytes) else str(record.key or ""))
        reply = Envelope.wrap(
            outcome,
            type=events.OUTCOME.format(status=status),
            source_system=self.name,
            subject=key,
            parent_traceparent=envelope.traceparent,
            visibility="restricted",
        )

        async def send() -> None:
            await self.publisher.publish(self.topics.outcomes, key, reply)

        await self.retry.call(send)

    async def _record(self, command_id: str, state: str, effect: Effect | None, traceparent: str | None) -> None:
        entry = LedgerEntry(command_id=command_id, target=self.name, state=state, at=utcnow(), effect=effect)
        event_type = events.LEDGER_DONE if state == "done" else events.LEDGER_ATTEMPTED
        envelope = Envelope.wrap(
            entry,
            type=event_type,
            source_system=self.name,
            subject=command_id,
            parent_traceparent=traceparent,
            visibility="restricted",
        )
        await self.publisher.publish(self.topics.ledger, command_id, envelope)
        self._note(entry)

    def _note(self, entry: LedgerEntry) -> None:
        if entry.state == "done":
            self._ledger[entry.command_id] = entry.effect or Effect()
            self._attempted.discard(entry.command_id)
        elif entry.command_id not in self._ledger:
            self._attempted.add(entry.command_id)
        metrics.LEDGER_SIZE.labels(self.name).set(len(self._ledger))

    async def _dead_letter(self, record: Any, kind: ErrorKind, reason: str, attempts: int = 1) -> None:
        log.error(
            "sink %s: dead-lettering %s[%d]@%d (%s): %s",
            self.name,
            record.topic,
            record.partition,
            record.offset,
            kind,
            reason,
        )
        letter = DeadLetter.of_record(
            record, error_kind=kind, reason=reason, consumer=f"sink.{self.name}", attempts=attempts
        )

        async def send() -> None:  # a broker blip must not stop the sink, nor lose the letter
            await send_to_dead_letters(self.publisher, self.topics, letter)

        await self.retry.call(send)

    # -- consumer thread -----------------------------------------------------------------

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _load_ledger(self) -> None:
        for record in read_to_end(self._bootstrap, self.topics.ledger, client_id=f"{self._client_id}-ledger"):
            try:
                entry = LEDGER_ENVELOPE.validate_json(record.value).data
            except ValidationError:
                continue
            if entry.target == self.name:
                self._note(entry)  # one key's entries share a partition: attempted, then done

    def _subscribe(self) -> KafkaConsumer:
        consumer = KafkaConsumer(
            bootstrap_servers=self._bootstrap.split(","),
            client_id=self._client_id,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Each command may take the retry budget (RetryPolicy.max_total_s); a poll's worth must
            # finish well within the poll interval, or the group hands the partition on meanwhile.
            max_poll_records=10,
            max_poll_interval_ms=1_800_000,
        )
        runner = self

        class ReloadLedgerOnAssign(ConsumerRebalanceListener):
            # Partitions that come from another instance come with commands it may have done.
            # Only a flag here: the listener runs inside poll(), where a long read would stall
            # the group protocol. The first assignment needs none: start() just read the ledger.
            first = True

            def on_partitions_revoked(self, revoked: Any) -> None:
                pass

            def on_partitions_assigned(self, assigned: Any) -> None:
                if assigned and not self.first:
                    runner._reload_ledger = True
                self.first = False

        consumer.subscribe([self.topics.commands(self.name)], listener=ReloadLedgerOnAssign())
        return consumer

    def _poll(self) -> dict[Any, list[Any]]:
        assert self._consumer is not None
        return self._consumer.poll(timeout_ms=500)

    def _commit(self, offsets: dict[TopicPartition, int]) -> bool:
        assert self._consumer is not None
        try:
            self._consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()})
        except (CommitFailedError, KafkaError) as exc:
            # The ledger makes the redelivery that follows harmless.
            log.warning(
                "sink %s: offset commit failed (%s); the next owner re-reads, the ledger de-duplicates", self.name, exc
            )
            return False
        return True

    def _close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
