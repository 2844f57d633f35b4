"""State of the streams, in Faust tables backed by changelog topics.

All three are keyed so that they live on the partition of their record: the agents that
use them consume topics keyed by record id (co-partitioned, RECORD_PARTITIONS each).
"""

from __future__ import annotations

from dataclasses import dataclass

import faust
from faust.types import TableT

from schemas.topics import RECORD_PARTITIONS


@dataclass
class StreamTables:
    records: TableT
    """record id -> latest TicketRecord (JSON)."""
    pending: TableT
    """record id -> {"fetched_at": epoch s, "requests": [...]}: mentions waiting for the record to be fetched."""
    linked: TableT
    """link id (thread id|record id) -> when the card was requested: one card per thread and record."""

    @classmethod
    def declare(cls, app: faust.App) -> StreamTables:
        def table(name: str, default: type | None = None) -> TableT:
            return app.Table(
                name,
                default=default,
                partitions=RECORD_PARTITIONS,
                schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
            )

        return cls(records=table("records"), pending=table("pending"), linked=table("linked"))
