"""Runs one connector's Sink: consume its commands topic, carry out many commands at once while
each key (a thread, a record) keeps its order, within the vendor's rate limits; report every
outcome, dead-letter what fails for good, commit only what is finished.

How a command travels (see connectors/base.py `Sink` for the sink's side of it):

1. The consumer thread polls up to `max_buffered` commands; beyond that it pauses its
   partitions (they wait in Kafka) until the backlog halves.
2. Each command joins its key's queue. A command with a `coalesce_key` supersedes the ones of
   that key still waiting in the queue with the same coalesce key and a rank not above its own.
3. One task per busy key works its queue in order: it waits for `not_before`, skips what a
   higher rank already did (superseded), what the ledger has as done (redelivered), takes a
   token from each of the command's lanes (scheduler.py), and carries it out, at most
   `max_concurrency` commands at once across keys.
4. The ledger entries and the outcome are awaited; then the offset counts as finished, and the
   consumer thread commits each partition's contiguous finished offsets every
   `commit_interval_s`.

A credential the platform refuses (AuthError) pauses intake, marks the sink down
(`threadlink_sink_up` 0, /healthz says why) and probes with the same command until it works;
nothing is dead-lettered meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata
from pydantic import TypeAdapter, ValidationError

from connectors.base import Lane, Sink
from connectors.errors import AuthError, BackpressureError, ConnectorError, RetriableError
from connectors.runtime import health, metrics
from connectors.runtime.deadletter import send_to_dead_letters
from connectors.runtime.kafka import KafkaPublisher
from connectors.runtime.ledger import SinkLedger
from connectors.runtime.offsets import OffsetTracker
from connectors.runtime.retry import RetryPolicy
from connectors.runtime.scheduler import RateLimiter
from schemas import events
from schemas.commands import Command
from schemas.deadletters import DeadLetter
from schemas.envelope import Envelope, utcnow
from schemas.ledger import LedgerEntry
from schemas.outcomes import Effect, ErrorKind, Outcome, OutcomeStatus
from schemas.records import RecordBase, RecordRef
from schemas.topics import TopicNames
from threadlink import logs

log = logging.getLogger(__name__)

COMMAND_ENVELOPE = TypeAdapter(Envelope[Command])

#: How long a rebalance waits for the commands being carried out of the partitions it takes.
REVOKE_GRACE_S = 5.0
#: How long a sink waits before asking again with a credential that was refused (doubling).
AUTH_PROBE_FIRST_S = 2.0
AUTH_PROBE_MAX_S = 60.0
#: How often a sink asks the broker for its partitions' end offsets (its lag gauge). A fetch
#: response's highwater would be free, but a paused sink fetches nothing: its lag would freeze
#: exactly when it rises.
LAG_INTERVAL_S = 5.0
#: The runner's own writes (ledger, outcomes, dead letters) wait out a broker outage of any length.
BROKER_RETRY = RetryPolicy(max_attempts=2**31 - 1, max_total_s=float("inf"), initial_backoff_s=0.5, max_backoff_s=10.0)


@dataclass(eq=False)
class Pending:
    """One polled command on its way."""

    record: Any
    envelope: Envelope[Command] | None
    """None: the record is not a command (it is dead-lettered in its turn)."""
    generation: int = 0
    started: bool = False
    superseded_by: str | None = None

    @property
    def partition(self) -> int:
        return int(self.record.partition)

    @property
    def key(self) -> str:
        key = self.record.key
        return key.decode(errors="replace") if isinstance(key, bytes) else str(key or "")


@dataclass(eq=False)
class KeyQueue:
    items: deque[Pending] = field(default_factory=deque)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class SinkRunner:
    """Lifecycle: `await start()` subscribes; `await run()` loops until `stop()`, then lets the
    commands being carried out finish (up to `stop_grace_s`), commits and closes. Consumer calls
    all happen on one thread (kafka-python consumers are not thread-safe)."""

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
        max_concurrency: int | None = None,
        max_buffered: int = 2_000,
        commit_interval_s: float = 0.5,
        ledger_window_ms: int | None = None,
        stop_grace_s: float = 15.0,
    ) -> None:
        self.name = name
        self.sink = sink
        self.topics = topics
        self.publisher = publisher
        self.retry = retry or getattr(sink, "retry_policy", None) or RetryPolicy()
        self.max_concurrency: int = max_concurrency or sink.max_concurrency
        self.max_buffered = max_buffered
        self.commit_interval_s = commit_interval_s
        self.stop_grace_s = stop_grace_s
        self.ledger = SinkLedger(name, **({"window_ms": ledger_window_ms} if ledger_window_ms else {}))
        self.limits = RateLimiter()
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sink-{name}")
        self._consumer: KafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self._slots = asyncio.Semaphore(self.max_concurrency)
        self._queues: dict[str, KeyQueue] = {}
        self._offsets = OffsetTracker()
        self._paused = False
        self._auth_ok = asyncio.Event()
        self._auth_ok.set()
        self._auth_prober: Pending | None = None
        self._probe_delay = AUTH_PROBE_FIRST_S
        # Shared with the rebalance listener, which runs on the consumer thread inside poll().
        self._lock = threading.Lock()
        self._commit_ready: dict[int, int] = {}
        self._revoked: set[int] = set()
        self._assigned_new: set[int] = set()
        self._revoking: set[int] = set()
        """Partitions being taken away: nothing more of them is started."""
        self._running: dict[int, int] = {}
        """Per partition, commands started and not finished (read by the rebalance listener)."""
        self._generation: dict[int, int] = {}
        """Per owned partition, which assignment of it this is: what was polled under an
        earlier one is dropped (the partition's next owner re-reads it from the commit)."""
        self._dropped: set[int] = set()
        """Partitions taken away with polled work dropped: taken over again, read from the commit."""
        self._last_commit = 0.0
        self._last_lag = 0.0
        self._lag_snapshot: tuple[dict[int, int], dict[int, int]] | None = None
        """End offsets and positions of the owned partitions, from the consumer thread."""

    @property
    def group_id(self) -> str:
        return f"{self.topics.namespace}.sink.{self.name}"

    @property
    def owned_partitions(self) -> set[int]:
        """The commands partitions this instance works on now."""
        return set(self._generation)

    @property
    def in_flight(self) -> int:
        return len(self._offsets)

    async def start(self) -> None:
        self._consumer = await self._in_thread(self._subscribe)
        await self.sink.start()
        health.set_status(f"sink:{self.name}", None)
        metrics.SINK_UP.labels(self.name).set(1)
        log.info(
            "sink %s: consuming %s (at most %d commands at once)",
            self.name,
            self.topics.commands(self.name),
            self.max_concurrency,
        )

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        try:
            while not self._stopping.is_set():
                pause = self.in_flight >= self.max_buffered or not self._auth_ok.is_set()
                resume = self.in_flight <= self.max_buffered // 2 and self._auth_ok.is_set()
                batches, assigned, revoked = await self._in_thread(self._poll, pause, resume)
                if revoked:
                    self._give_away(revoked)
                if assigned:
                    # Partitions this instance dropped polled work of, now back (at once in an
                    # eager rebalance, or later): re-read from their commit, not from this poll.
                    handed_back = assigned & self._dropped
                    self._dropped -= handed_back
                    batches = {tp: rs for tp, rs in batches.items() if tp.partition not in handed_back}
                    await self._in_thread(self._take_over, assigned, handed_back)
                    for partition in assigned:
                        self._generation[partition] = self._generation.get(partition, 0) + 1
                    log.info("sink %s: assigned partitions %s", self.name, sorted(assigned))
                for records in batches.values():
                    for record in records:
                        self._intake(record)
                metrics.SINK_IN_FLIGHT.labels(self.name).set(self.in_flight)
                with self._lock:
                    snapshot, self._lag_snapshot = self._lag_snapshot, None
                if snapshot is not None:
                    metrics.SINK_LAG.labels(self.name).set(self._offsets.lag(*snapshot))
                if self.ledger.expire():
                    metrics.LEDGER_SIZE.labels(self.name).set(len(self.ledger))
        finally:
            await self._finish_running()
            await self.sink.stop()
            await self._in_thread(self._close)
            self._executor.shutdown(wait=False)

    # -- intake ----------------------------------------------------------------------------

    def _intake(self, record: Any) -> None:
        try:
            envelope: Envelope[Command] | None = COMMAND_ENVELOPE.validate_json(record.value)
        except ValidationError:
            envelope = None
        item = Pending(record, envelope, generation=self._generation.get(int(record.partition), 0))
        self._offsets.take(item.partition, record.offset)
        queue = self._queues.get(item.key)
        if queue is None:
            queue = self._queues[item.key] = KeyQueue()
        if envelope is not None and envelope.data.coalesce_key is not None:
            self._supersede_waiting(queue, envelope)
        queue.items.append(item)
        queue.changed.set()
        if queue.task is None:
            queue.task = asyncio.create_task(self._work(item.key, queue), name=f"sink-{self.name}-key")

    def _supersede_waiting(self, queue: KeyQueue, newer: Envelope[Command]) -> None:
        command = newer.data
        for waiting in queue.items:
            other = waiting.envelope.data if waiting.envelope is not None else None
            if (
                other is not None
                and not waiting.started
                and waiting.superseded_by is None
                and other.coalesce_key == command.coalesce_key
                and other.coalesce_rank <= command.coalesce_rank
            ):
                waiting.superseded_by = command.command_id

    # -- one key's queue -------------------------------------------------------------------

    async def _work(self, key: str, queue: KeyQueue) -> None:
        try:
            while queue.items and not self._stopping.is_set():
                item = queue.items[0]
                if not self._owns(item):
                    queue.items.popleft()  # its partition was taken away: its next owner re-reads it
                    continue
                wait = self._not_before_wait(item)
                if wait > 0:
                    queue.changed.clear()
                    await self._sleep(wait, queue.changed)
                    continue
                item.started = True
                self._running[item.partition] = self._running.get(item.partition, 0) + 1
                try:
                    await self._handle(item)
                finally:
                    self._running[item.partition] -= 1
                if queue.items and queue.items[0] is item:
                    queue.items.popleft()
                if self._owns(item):
                    self._finished(item)
        finally:
            queue.task = None
            if self._queues.get(key) is queue and not queue.items:
                del self._queues[key]

    def _owns(self, item: Pending) -> bool:
        return self._generation.get(item.partition) == item.generation and item.partition not in self._revoking

    def _not_before_wait(self, item: Pending) -> float:
        if item.envelope is None or item.superseded_by is not None:
            return 0.0
        not_before = item.envelope.data.not_before
        return 0.0 if not_before is None else (not_before - utcnow()).total_seconds()

    async def _sleep(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        """Sleep, ending early on stop (or when `wake` is set)."""
        waits = [asyncio.ensure_future(self._stopping.wait())]
        if wake is not None:
            waits.append(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    def _finished(self, item: Pending) -> None:
        point = self._offsets.finish(item.partition, item.record.offset)
        if point is not None:
            with self._lock:
                self._commit_ready[item.partition] = point

    # -- one command -----------------------------------------------------------------------

    async def _handle(self, item: Pending) -> None:
        envelope, record = item.envelope, item.record
        if envelope is not None:  # the key's own task: its log lines carry the command's ids
            logs.bind(envelope.id, envelope.traceparent)
        if envelope is None:
            await self._dead_letter(record, "invalid", "not a command envelope")
            metrics.SINK_COMMANDS.labels(self.name, "unknown", "dead_lettered").inc()
            return
        command = envelope.data
        partition = item.partition
        if item.superseded_by is None and command.coalesce_key is not None:
            done_rank = self.ledger.rank_done(partition, command.coalesce_key)
            if done_rank is not None and command.coalesce_rank < done_rank:
                item.superseded_by = f"rank {done_rank}"
        if item.superseded_by is not None:
            metrics.SINK_COMMANDS.labels(self.name, command.kind, "superseded").inc()
            await self._report(envelope, record, "superseded", reason=f"superseded by {item.superseded_by}")
            return
        done = self.ledger.done(partition, command.command_id)
        if done is not None:
            metrics.SINK_COMMANDS.labels(self.name, command.kind, "duplicate").inc()
            # Said again: the flow that re-emitted it may not have heard the first time.
            await self._report(envelope, record, "done", effect=done.effect_model(), redelivered=True)
            return
        await self._carry_out(item, envelope)

    async def _carry_out(self, item: Pending, envelope: Envelope[Command]) -> None:
        command, record = envelope.data, item.record
        started = time.perf_counter()
        if self.ledger.attempted(item.partition, command.command_id):
            self.sink.outcome_unknown(command.command_id)
        # Recorded before the side effect: a crash during it leaves the outcome known to be unknown.
        await self._record(item, "attempted", None)
        lanes = self.sink.lanes(command)
        attempts = 0

        async def attempt() -> Effect:
            nonlocal attempts
            # Wait for the lanes without a slot (a key waiting for its channel holds none from the
            # others), then take the tokens only once a slot is held, so the call goes out at once
            # and two calls of one lane never reach the platform closer than its rate.
            while True:
                delay = self.limits.delay(lanes)
                if delay > 0:
                    metrics.SINK_RATE_WAITS.labels(self.name).inc()
                    await asyncio.sleep(delay)
                async with self._slots:
                    if self.limits.take(lanes):
                        attempts += 1
                        return await self.sink.execute(command, envelope)

        def on_retry(state: Any) -> None:
            exc = state.outcome.exception()
            metrics.SINK_RETRIES.labels(self.name, command.kind).inc()
            if isinstance(exc, BackpressureError) and lanes:
                self.limits.hold(lanes[0], exc.retry_after or 1.0)
            log.warning("sink %s: %s %s: %s; retrying", self.name, command.kind, command.command_id, exc)

        failure: tuple[ErrorKind, str] | None = None
        effect = Effect()
        while True:
            try:
                effect = await self.retry.call(attempt, on_retry=on_retry)
            except AuthError as exc:
                if await self._wait_for_credential(item, exc):
                    continue
                return  # stopping: not finished, not committed; the next start carries it out
            except RetriableError as exc:
                failure = ("retries_exhausted", str(exc))
            except ConnectorError as exc:
                failure = ("skippable" if exc.kind == "skippable" else "fatal", str(exc))
            except Exception as exc:  # a bug in a sink must not stop the partition or lose the command
                log.exception("sink %s: %s failed unexpectedly", self.name, command.kind)
                failure = ("fatal", f"unexpected {type(exc).__name__}")
            break
        self._credential_works(item)
        if failure is not None:
            await asyncio.gather(
                self._dead_letter(record, failure[0], failure[1], attempts),
                self._report(envelope, record, "failed", error_kind=failure[0], reason=failure[1]),
            )
            metrics.SINK_COMMANDS.labels(self.name, command.kind, "dead_lettered").inc()
            return
        # The side effect happened: the ledger write is retried on its own, never the effect again.
        await asyncio.gather(self._record(item, "done", effect), self._report(envelope, record, "done", effect=effect))
        metrics.SINK_COMMANDS.labels(self.name, command.kind, "done").inc()
        metrics.SINK_SECONDS.labels(self.name, command.kind).observe(time.perf_counter() - started)
        metrics.END_TO_END_SECONDS.labels(self.name, command.kind).observe(
            max(0.0, (utcnow() - envelope.occurred_at).total_seconds())
        )

    # -- a refused credential --------------------------------------------------------------

    async def _wait_for_credential(self, item: Pending, exc: AuthError) -> bool:
        """Wait until the credential may work again; False when the sink is stopping. One
        command probes (the first refused); the others wait for its answer."""
        if self._auth_ok.is_set():
            self._auth_ok.clear()
            self._auth_prober = item
            metrics.SINK_UP.labels(self.name).set(0)
            why = f"{exc}; fix the credential in connectors.{self.name} (then restart, or let it be retried)"
            health.set_status(f"sink:{self.name}", why)
            log.error(
                "sink %s: the platform refuses the credential (%s): intake paused, commands wait in Kafka; "
                "fix connectors.%s's credential, threadlink retries every %gs-%gs and resumes on its own",
                self.name,
                exc,
                self.name,
                AUTH_PROBE_FIRST_S,
                AUTH_PROBE_MAX_S,
            )
            self._probe_delay = AUTH_PROBE_FIRST_S
        if self._auth_prober is item:
            await self._sleep(self._probe_delay)
            self._probe_delay = min(self._probe_delay * 2, AUTH_PROBE_MAX_S)
        else:
            await self._sleep(3600, self._auth_ok)
        return not self._stopping.is_set()

    def _credential_works(self, item: Pending) -> None:
        if self._auth_ok.is_set():
            return
        if self._auth_prober is item or self._auth_prober is None:
            log.info("sink %s: the credential works again; resuming", self.name)
            self._auth_prober = None
            self._auth_ok.set()
            metrics.SINK_UP.labels(self.name).set(1)
            health.set_status(f"sink:{self.name}", None)

    # -- what a command leaves behind ------------------------------------------------------

    async def _report(
        self,
        envelope: Envelope[Command],
        record: Any,
        status: OutcomeStatus,
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
            destination=getattr(command, "destination", None) or getattr(command, "thread", None),
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

        await self._to_broker(send, "outcome")

    async def _record(self, item: Pending, state: str, effect: Effect | None) -> None:
        """A ledger entry, in the ledger partition numbered like the command's (retried)."""
        assert item.envelope is not None
        command = item.envelope.data
        done = state == "done"
        entry = LedgerEntry(
            command_id=command.command_id,
            target=self.name,
            state="done" if done else "attempted",
            at=utcnow(),
            effect=effect,
            coalesce_key=command.coalesce_key if done else None,
            coalesce_rank=command.coalesce_rank if done and command.coalesce_key else None,
        )
        envelope = Envelope.wrap(
            entry,
            type=events.LEDGER_DONE if done else events.LEDGER_ATTEMPTED,
            source_system=self.name,
            subject=command.command_id,
            parent_traceparent=item.envelope.traceparent,
            visibility="restricted",
        )

        async def send() -> None:
            await self.publisher.publish(self.topics.ledger, command.command_id, envelope, partition=item.partition)

        await self._to_broker(send, "ledger entry")
        self.ledger.note(item.partition, entry)
        metrics.LEDGER_SIZE.labels(self.name).set(len(self.ledger))

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

        await self._to_broker(send, "dead letter")

    async def _to_broker(self, send: Any, what: str) -> None:
        """A write of the runner's own bookkeeping, retried until the broker takes it: giving up
        would stop the key's queue behind a command whose effect is already out."""

        def on_retry(state: Any) -> None:
            log.warning(
                "sink %s: the broker did not take a %s (%s); retrying", self.name, what, state.outcome.exception()
            )

        await BROKER_RETRY.call(send, on_retry=on_retry)

    # -- partitions coming and going -------------------------------------------------------

    def _give_away(self, partitions: set[int]) -> None:
        """Partitions taken away (an eager rebalance takes them all, and may hand them back at
        once): drop what of them is still waiting and their offsets. Their ledger entries stay: taken
        over again, only what was appended since is read."""
        for partition in partitions:
            self._generation.pop(partition, None)
        self._dropped |= partitions
        self._offsets.forget(partitions)
        with self._lock:
            self._revoking -= partitions
        for queue in self._queues.values():
            queue.changed.set()  # wake waiting keys: their heads may be gone

    async def _finish_running(self) -> None:
        """On stop: commands being carried out get `stop_grace_s` to finish; waiting ones stay
        in Kafka (uncommitted) for the next start."""
        tasks = [queue.task for queue in self._queues.values() if queue.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.stop_grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._in_thread(self._commit, True)

    # -- consumer thread -------------------------------------------------------------------

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _subscribe(self) -> KafkaConsumer:
        consumer = KafkaConsumer(
            bootstrap_servers=self._bootstrap.split(","),
            client_id=self._client_id,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=500,
            # Commands of a refused credential or a long Retry-After wait in memory meanwhile.
            max_poll_interval_ms=1_800_000,
        )
        topic = self.topics.commands(self.name)
        consumer.subscribe([topic], listener=_Rebalance(self))
        # Learn the topic's partitions after subscribing and before the first join (topics()
        # asks the broker; see pollers.py's _subscribe): a leader that assigns from an empty
        # snapshot leaves the sink without partitions until a rebalance kafka-python 3.0 may
        # never finish. A topic just created may take a moment to be listed.
        deadline = time.monotonic() + 60
        while topic not in consumer.topics() or not consumer.partitions_for_topic(topic):
            if time.monotonic() > deadline:
                log.warning("sink %s: %s is not listed by the broker: run `threadlink topics apply`", self.name, topic)
                break
            time.sleep(0.2)
        return consumer

    def _poll(self, pause: bool, resume: bool) -> tuple[dict[Any, list[Any]], set[int], set[int]]:
        consumer = self._consumer
        assert consumer is not None
        if pause and not self._paused:
            consumer.pause(*consumer.assignment())
            self._paused = True
        elif resume and self._paused:
            consumer.resume(*consumer.assignment())
            self._paused = False
        self._commit()
        batches = consumer.poll(timeout_ms=100 if self.in_flight else 500)
        self._measure_lag(consumer)
        with self._lock:
            assigned, self._assigned_new = self._assigned_new, set()
            revoked, self._revoked = self._revoked, set()
        return batches, assigned, revoked

    def _measure_lag(self, consumer: KafkaConsumer) -> None:
        if time.monotonic() - self._last_lag < LAG_INTERVAL_S:
            return
        self._last_lag = time.monotonic()
        assignment = list(consumer.assignment())
        try:
            ends = consumer.end_offsets(assignment) if assignment else {}
            positions = {tp.partition: consumer.position(tp) for tp in assignment}
        except KafkaError as exc:
            log.debug("sink %s: end offsets not read (%s); lag measured next time", self.name, exc)
            return
        with self._lock:
            self._lag_snapshot = ({tp.partition: end for tp, end in ends.items()}, positions)

    def _take_over(self, partitions: set[int], handed_back: set[int]) -> None:
        """Before the first command of newly assigned partitions: what was done on them, by
        anyone (the ledger's partitions of the same numbers)."""
        consumer = self._consumer
        assert consumer is not None
        # What was polled under the earlier assignment and not finished was dropped: read again
        # from the commit (kafka-python keeps the position of a partition handed straight back).
        topic = self.topics.commands(self.name)
        for partition in handed_back:
            tp = TopicPartition(topic, partition)
            committed = consumer.committed(tp)
            if committed is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        self.ledger.load(self._bootstrap, self.topics.ledger, partitions, client_id=f"{self._client_id}-ledger")
        metrics.LEDGER_SIZE.labels(self.name).set(len(self.ledger))
        if self._paused:
            consumer.pause(*consumer.assignment())

    def _commit(self, now: bool = False) -> None:
        if not now and time.monotonic() - self._last_commit < self.commit_interval_s:
            return
        self._last_commit = time.monotonic()
        with self._lock:
            ready, self._commit_ready = self._commit_ready, {}
        self._commit_offsets(ready)

    def _commit_offsets(self, ready: dict[int, int]) -> None:
        consumer = self._consumer
        if not ready or consumer is None:
            return
        topic = self.topics.commands(self.name)
        owned = {tp.partition for tp in consumer.assignment()}
        offsets = {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in ready.items() if p in owned}
        if not offsets:
            return
        try:
            consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The ledger makes the redelivery that follows harmless.
            log.warning(
                "sink %s: offset commit failed (%s); the next owner re-reads, the ledger de-duplicates", self.name, exc
            )

    def _close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()


class _Rebalance(ConsumerRebalanceListener):
    """Runs on the consumer's IO thread inside poll(), where no blocking consumer call may be
    made: it only waits and flags."""

    def __init__(self, runner: SinkRunner) -> None:
        self.runner = runner

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        # Like Kafka Connect's flush on revoke: nothing more of these partitions is started, and
        # the commands being carried out get REVOKE_GRACE_S to finish, so their next owner finds
        # them done in the ledger (or at worst `attempted`: outcome unknown, it checks). What
        # finished after the last commit is re-read by that owner and answered from the ledger.
        runner = self.runner
        partitions = {tp.partition for tp in revoked}
        with runner._lock:
            runner._revoking |= partitions
        deadline = time.monotonic() + REVOKE_GRACE_S
        while any(runner._running.get(p, 0) for p in partitions) and time.monotonic() < deadline:
            time.sleep(0.01)
        with runner._lock:
            for p in partitions:
                runner._commit_ready.pop(p, None)
            runner._revoked |= partitions

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        with self.runner._lock:
            self.runner._assigned_new |= {tp.partition for tp in assigned}


__all__ = ["Lane", "SinkRunner"]
