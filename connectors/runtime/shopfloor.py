"""What the shop-floor stream sources (MQTT, OPC UA) share: the record kinds they make, their
default titles, how a scalar becomes a record's text, and the dead letter of input that never
was on a Kafka topic."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from schemas.deadletters import DeadLetter
from schemas.records import MachineStateRecord, ProductionOrderRecord

TEXT, TIME, NUMBER = "text", "time", "number"
#: The fields of the shop-floor records, by kind, and how each value is read.
SHOPFLOOR_FIELDS: dict[str, dict[str, str]] = {
    "production_order": {
        "plant": TEXT,
        "line": TEXT,
        "status": TEXT,
        "product": TEXT,
        "quantity": TEXT,
        "due_at": TIME,
        "updated_at": TIME,
        "version": NUMBER,
    },
    "machine_state": {
        "plant": TEXT,
        "line": TEXT,
        "machine": TEXT,
        "state": TEXT,
        "reason": TEXT,
        "order": TEXT,
        "updated_at": TIME,
        "version": NUMBER,
    },
}
RECORD_MODELS: dict[str, type[ProductionOrderRecord] | type[MachineStateRecord]] = {
    "production_order": ProductionOrderRecord,
    "machine_state": MachineStateRecord,
}
DEFAULT_TITLES = {"production_order": "Order {key}", "machine_state": "Machine {key}"}


def plain_text(value: Any) -> str | None:
    """A text, number or boolean as a record's text (`true`/`false`); None for anything else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def source_dead_letter(*, topic: str, key: str, payload: bytes, reason: str, consumer: str) -> DeadLetter:
    """Input a stream source received and cannot map. `topic` is `<platform>:<connector>`, not a
    Kafka topic, so `dlq replay` skips it; the payload is kept as text, or base64 if it is not UTF-8."""
    try:
        value, encoding = payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        value, encoding = base64.b64encode(payload).decode(), "base64"
    return DeadLetter.model_validate(
        {
            "topic": topic,
            "partition": -1,
            "offset": -1,
            "key": key,
            "value": value,
            "value_encoding": encoding,
            "error_kind": "invalid",
            "reason": reason,
            "consumer": consumer,
            "failed_at": datetime.now(UTC),
        }
    )
