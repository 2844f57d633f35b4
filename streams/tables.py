"""The flows' state, in Faust tables backed by changelog topics and stored in RocksDB on the
worker's disk (a restart reads only the changelog it has not seen yet).

- `records`: record id -> RecordState, on the partitions of the record-keyed topics (records,
  links.requests, records.comments, sinks.outcomes: co-partitioned, STREAM_PARTITIONS each);
- `threads`: thread id -> ThreadState, on the partitions of social.events;
- `reach-watch`: thread id -> the next first-answer step due, beside `threads` (Reach).

Keys are the ids; values the states as JSON (Faust's json codec, orjson when installed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import faust
from faust.types import TableT
from pydantic import BaseModel, TypeAdapter

from schemas.topics import STREAM_PARTITIONS
from streams.state import RECORD_STATE, THREAD_STATE, RecordState, ThreadState

S = TypeVar("S", bound=BaseModel)

#: RocksDB's defaults (a 2 GiB block cache, 64 MiB write buffers) are sized for servers that
#: hold a few large tables; a worker holds one small database per table and partition.
ROCKSDB_OPTIONS = {
    "write_buffer_size": 4 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "target_file_size_base": 16 * 1024 * 1024,
    "block_cache_size": 8 * 1024 * 1024,
    "block_cache_compressed_size": 0,
}


@dataclass
class StateTable(Generic[S]):
    """A Faust table of one state model. Read and write only while handling an event: the
    store finds the key's partition from the current event."""

    table: TableT
    adapter: TypeAdapter[S]
    model: type[S]

    def __post_init__(self) -> None:
        self._empty = self.model().model_dump(mode="json", exclude_none=True)

    def get(self, key: str) -> tuple[S, Any]:
        """The state of `key` (a fresh one when there is none), and what is stored for it."""
        stored = self.table.get(key)
        return (self.model() if stored is None else self.adapter.validate_python(stored)), stored

    def put(self, key: str, state: S, stored: Any) -> None:
        """Store `state` unless it is what `stored` already holds (no changelog write then)."""
        value = state.model_dump(mode="json", exclude_none=True)
        if stored is None and value == self._empty:
            return  # nothing known about the key: no entry (an outcome of another flow's key)
        if value != stored:
            self.table[key] = value


@dataclass
class StreamTables:
    records: StateTable[RecordState]
    threads: StateTable[ThreadState]
    watch: TableT
    """thread id -> the next first-answer step due (Reach), for the unanswered threads only: what
    the workers' timer (streams/reach_timer.py) scans, so it never reads the threads table."""

    @classmethod
    def declare(cls, app: faust.App) -> StreamTables:
        def table(name: str) -> TableT:
            return app.Table(
                name,
                partitions=STREAM_PARTITIONS,
                key_type=str,
                options=dict(ROCKSDB_OPTIONS),
            )

        return cls(
            records=StateTable(table("records"), RECORD_STATE, RecordState),
            threads=StateTable(table("threads"), THREAD_STATE, ThreadState),
            watch=table("reach-watch"),
        )
