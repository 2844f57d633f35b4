"""What could not be processed, with why: `threadlink dlq replay` sends it back."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from schemas.outcomes import ErrorKind
from schemas.trace import TRACEPARENT_RE


class DeadLetter(BaseModel):
    topic: str = Field(description="Where the original was read (or `webhook:<connector>` for a request).")
    partition: int
    offset: int
    key: str | None = None
    value: str = Field(description="The original value, UTF-8 (or base64 when not text).")
    value_encoding: Literal["utf-8", "base64"] = "utf-8"
    error_kind: ErrorKind
    reason: str
    consumer: str
    failed_at: datetime
    attempts: int = 1
    traceparent: str | None = Field(
        default=None,
        description="The original's W3C trace context (its Kafka header): where to look in traces and logs.",
    )
    outcome_unknown: bool = Field(
        default=False,
        description="An attempt may have had its side effect: a replay looks for it before doing it again.",
    )

    @classmethod
    def of_record(
        cls,
        record: Any,
        *,
        error_kind: ErrorKind,
        reason: str,
        consumer: str,
        attempts: int = 1,
        outcome_unknown: bool = False,
    ) -> DeadLetter:
        """From a consumed record (kafka-python's ConsumerRecord or Faust's Message: both have
        topic, partition, offset, key and value)."""
        raw = record.value if isinstance(record.value, bytes) else str(record.value or "").encode()
        try:
            value, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            value, encoding = base64.b64encode(raw).decode(), "base64"
        key = record.key.decode("utf-8", "replace") if isinstance(record.key, bytes) else record.key
        return cls.model_validate(
            {
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "key": key,
                "value": value,
                "value_encoding": encoding,
                "error_kind": error_kind,
                "reason": reason,
                "consumer": consumer,
                "failed_at": datetime.now(UTC),
                "attempts": attempts,
                "outcome_unknown": outcome_unknown,
                "traceparent": _traceparent(getattr(record, "headers", None)),
            }
        )

    def original_value(self) -> bytes:
        return base64.b64decode(self.value) if self.value_encoding == "base64" else self.value.encode()


def _traceparent(headers: Any) -> str | None:
    """The `traceparent` header of a record (a list of (name, bytes) pairs, or a mapping)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers if isinstance(headers, list | tuple) else []
    for pair in pairs:
        if isinstance(pair, tuple | list) and len(pair) == 2 and pair[0] == "traceparent":
            value = pair[1].decode("ascii", "replace") if isinstance(pair[1], bytes) else str(pair[1])
            return value if TRACEPARENT_RE.match(value) else None
    return None
