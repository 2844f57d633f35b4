"""The sink's ledger: which commands it started and finished, for the partitions it owns.

Entries are written to the ledger topic's partition with the number of the command's partition
(both topics have SINK_PARTITIONS), so a sink assigned commands partition p reads ledger
partition p and nothing else, and only back to the retention window (`window_ms`, the topic's
retention by default). docs/architecture.md ("The sinks' ledger") says what the window
guarantees.

Loading parses only the few fields it needs (orjson, no model validation): a million entries
load in seconds, and each is held as a small tuple.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as AIOTopicPartition

from schemas.ledger import LedgerEntry
from schemas.outcomes import Effect
from schemas.topics import LEDGER_RETENTION_MS

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Done:
    at_ms: int
    effect: bytes | None
    """The effect's JSON (None: no effect fields), parsed only when a redelivery asks for it."""

    def effect_model(self) -> Effect:
        return Effect.model_validate_json(self.effect) if self.effect else Effect()


class SinkLedger:
    """In memory, per partition this sink owns or owned: done commands (with their effect), started ones whose
    outcome is unknown, and the highest rank done per coalesce key. Not thread-safe: loading
    runs on the consumer thread while the loop waits for it."""

    def __init__(self, target: str, *, window_ms: int = LEDGER_RETENTION_MS) -> None:
        self.target = target
        self.window_ms = window_ms
        self._done: dict[int, dict[str, Done]] = {}
        self._attempted: dict[int, dict[str, int]] = {}
        self._ranks: dict[int, dict[str, int]] = {}
        self._read_to: dict[int, int] = {}
        """Per partition, the ledger offset loading has read up to: loading it again (the
        partition came back after a rebalance) reads only what was appended since."""

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._done.values())

    @property
    def partitions(self) -> set[int]:
        return set(self._done)

    # -- lookups ---------------------------------------------------------------------------

    def done(self, partition: int, command_id: str) -> Done | None:
        return self._done.get(partition, {}).get(command_id)

    def attempted(self, partition: int, command_id: str) -> bool:
        return command_id in self._attempted.get(partition, {})

    def rank_done(self, partition: int, coalesce_key: str) -> int | None:
        return self._ranks.get(partition, {}).get(coalesce_key)

    # -- changes ---------------------------------------------------------------------------

    def note(self, partition: int, entry: LedgerEntry) -> None:
        at_ms = int(entry.at.timestamp() * 1000)
        effect = entry.effect.model_dump_json(exclude_defaults=True).encode() if entry.effect else None
        self._note(partition, entry.command_id, entry.state, at_ms, effect, entry.coalesce_key, entry.coalesce_rank)

    def _note(
        self,
        partition: int,
        command_id: str,
        state: str,
        at_ms: int,
        effect: bytes | None,
        coalesce_key: str | None,
        coalesce_rank: int | None,
    ) -> None:
        attempted = self._attempted.setdefault(partition, {})
        done = self._done.setdefault(partition, {})
        if state == "done":
            done[command_id] = Done(at_ms, effect if effect and effect != b"{}" else None)
            attempted.pop(command_id, None)
            if coalesce_key is not None and coalesce_rank is not None:
                ranks = self._ranks.setdefault(partition, {})
                if coalesce_rank > ranks.get(coalesce_key, coalesce_rank - 1):
                    ranks[coalesce_key] = coalesce_rank
        elif command_id not in done:
            attempted[command_id] = at_ms

    def expire(self, now_ms: int | None = None) -> int:
        """Drop entries older than the window (insertion order is time order); returns how many."""
        horizon = (now_ms if now_ms is not None else int(time.time() * 1000)) - self.window_ms
        dropped = 0
        for entries in self._done.values():
            while entries:
                command_id, first = next(iter(entries.items()))
                if first.at_ms >= horizon:
                    break
                del entries[command_id]
                dropped += 1
        for started in self._attempted.values():
            for command_id in [c for c, at in started.items() if at < horizon]:
                del started[command_id]
        return dropped

    # -- loading (blocking; on the consumer thread) ----------------------------------------

    def load(self, bootstrap_servers: str, topic: str, partitions: Iterable[int], *, client_id: str) -> int:
        """Read `partitions` of the ledger topic from the start of the window to their end
        (as seen when loading starts). Returns the entries read (all targets). Blocking: runs
        on the consumer thread, with an event loop of its own for the read."""
        wanted = sorted(set(partitions))
        for partition in wanted:
            self._done.setdefault(partition, {})
            self._attempted.setdefault(partition, {})
        if not wanted:
            return 0
        return asyncio.run(self._read(bootstrap_servers, topic, wanted, client_id))

    async def _read(self, bootstrap_servers: str, topic: str, wanted: list[int], client_id: str) -> int:
        # aiokafka, not the sink's kafka-python: its record batches are decoded in C, which
        # reads a million entries in a third of the time (the sink cannot serve until then).
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers.split(","),
            client_id=client_id,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )
        await consumer.start()
        try:
            tps = [AIOTopicPartition(topic, p) for p in wanted]
            consumer.assign(tps)
            since = int(time.time() * 1000) - self.window_ms
            fresh = [tp for tp in tps if tp.partition not in self._read_to]
            starts = await consumer.offsets_for_times({tp: since for tp in fresh}) if fresh else {}
            ends = await consumer.end_offsets(tps)
            pending: dict[AIOTopicPartition, int] = {}
            total = 0
            for tp in tps:
                if tp.partition in self._read_to:
                    start = self._read_to[tp.partition]
                else:
                    found = starts.get(tp)
                    start = found.offset if found is not None else ends[tp]
                self._read_to[tp.partition] = ends[tp]
                if start < ends[tp]:
                    consumer.seek(tp, start)
                    pending[tp] = ends[tp]
                    total += ends[tp] - start
                else:
                    consumer.pause(tp)
            read, started, said = 0, time.monotonic(), time.monotonic()
            if total:
                log.info("sink %s: loading its ledger: %d entries of partitions %s", self.target, total, wanted)
            while pending:
                batches = await consumer.getmany(*pending, timeout_ms=500, max_records=50_000)
                for tp, records in batches.items():
                    for record in records:
                        self._load_one(tp.partition, record.value, record.timestamp)
                    read += len(records)
                for tp in [tp for tp, end in pending.items() if await consumer.position(tp) >= end]:
                    pending.pop(tp)  # read to its end (which may be a transaction marker or a compacted gap)
                    consumer.pause(tp)
                if time.monotonic() - said > 5:
                    said = time.monotonic()
                    log.info("sink %s: ledger %d/%d entries", self.target, read, total)
            if total:
                log.info("sink %s: ledger loaded (%d entries, %.1fs)", self.target, read, time.monotonic() - started)
            return read
        finally:
            await consumer.stop()

    def _load_one(self, partition: int, value: Any, timestamp_ms: int) -> None:
        """`timestamp_ms`: the record's (its producer's send time, within milliseconds of the
        entry's `at`, and no date to parse)."""
        try:
            data = orjson.loads(value)["data"]
            if data.get("target") != self.target:
                return
            at_ms = int(timestamp_ms)
            effect = data.get("effect")
            self._note(
                partition,
                data["command_id"],
                data.get("state", "done"),
                at_ms,
                # A copy: orjson's bytes keep its 4 KiB output buffer (4 GB for a million entries).
                bytes(memoryview(orjson.dumps(effect))) if effect else None,
                data.get("coalesce_key"),
                data.get("coalesce_rank"),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            log.debug("ledger: an entry in partition %d is not one of ours; skipped", partition)
