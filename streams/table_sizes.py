"""How many keys each of the worker's tables holds on the partitions it owns (RocksDB's own
estimate, `rocksdb.estimate-num-keys`: no scan), refreshed every `SIZE_INTERVAL_S`. Summed over
the workers, it is the table's size; a standby copy is not counted."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from faust.types import TableT
from prometheus_client import Gauge

if TYPE_CHECKING:
    from streams.app import StreamsContext

log = logging.getLogger(__name__)

SIZE_INTERVAL_S = 30.0

TABLE_KEYS = Gauge(
    "threadlink_stream_table_keys",
    "Keys of a flow table on this worker's active partitions (RocksDB's estimate).",
    ["table"],
)


def keys_on_active_partitions(table: TableT, active: set[int]) -> int:
    store = table.data
    total = 0
    for partition, db in list(getattr(store, "_dbs", {}).items()):
        if partition not in active:
            continue
        try:
            total += int(db.property_int_value("rocksdb.estimate-num-keys") or 0)
        except (AttributeError, ValueError, TypeError):
            continue  # a store without RocksDB's properties: nothing to estimate
    return total


def register(ctx: StreamsContext) -> None:
    tables = {"records": ctx.tables.records.table, "threads": ctx.tables.threads.table, "reach-watch": ctx.tables.watch}
    for name in tables:
        TABLE_KEYS.labels(name).set(0)

    @ctx.app.timer(interval=SIZE_INTERVAL_S, on_leader=False)
    async def measure_table_sizes() -> None:
        actives = ctx.app.assignor.assigned_actives()
        for name, table in tables.items():
            changelog = table.changelog_topic.get_topic_name()
            active = {tp.partition for tp in actives if tp.topic == changelog}
            try:
                TABLE_KEYS.labels(name).set(keys_on_active_partitions(table, active))
            except Exception as exc:  # never let a gauge stop the worker (Faust stops on a timer's error)
                log.debug("table size of %s not measured (%s)", name, exc)
