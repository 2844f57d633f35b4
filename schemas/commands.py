"""Commands from streams to sinks. Each carries a deterministic `command_id`: sinks keep a
ledger of done ids, so a command delivered twice has its side effect once."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from schemas.records import RecordRef, TicketRecord
from schemas.social import ThreadRef


def command_id_for(kind: str, *parts: str) -> str:
    """Same inputs, same id: the idempotency key of a side effect."""
    digest = hashlib.sha256("\x1f".join((kind, *parts)).encode()).hexdigest()[:32]
    return f"{kind}-{digest}"


class _Command(BaseModel):
    command_id: str
    target: str = Field(description="Name of the connector that carries it out (its commands topic).")


class PostCard(_Command):
    kind: Literal["post_card"] = "post_card"
    thread: ThreadRef
    record: TicketRecord
    in_reply_to: str = Field(description="Message that mentioned the record.")


class UpdateCard(_Command):
    kind: Literal["update_card"] = "update_card"
    thread: ThreadRef
    record: TicketRecord
    card_message_id: str | None = None


class AddComment(_Command):
    kind: Literal["add_comment"] = "add_comment"
    record: RecordRef
    thread: ThreadRef
    body: str = Field(description="The comment's words; the sink adds the link to the thread.")
    permalink: str | None = None


class CreateTicket(_Command):
    kind: Literal["create_ticket"] = "create_ticket"
    thread: ThreadRef
    project: str
    summary: str
    description: str = ""


class FetchRecord(_Command):
    kind: Literal["fetch_record"] = "fetch_record"
    record: RecordRef


Command = Annotated[PostCard | UpdateCard | AddComment | CreateTicket | FetchRecord, Field(discriminator="kind")]


class LedgerEntry(BaseModel):
    """A side effect that was done (sinks skip commands whose id is in the ledger), or that was
    started: an `attempted` entry without a later `done` one means its outcome is unknown."""

    command_id: str
    target: str
    state: Literal["attempted", "done"] = "done"
    done_at: datetime
    result: dict[str, Any] = Field(default_factory=dict)


class DeadLetter(BaseModel):
    """What could not be processed, with why: `threadlink dlq replay` sends it back."""

    topic: str
    partition: int
    offset: int
    key: str | None = None
    value: str = Field(description="The original value, UTF-8 (or base64 when not text).")
    value_encoding: Literal["utf-8", "base64"] = "utf-8"
    error_kind: Literal["fatal", "skippable", "retries_exhausted", "invalid"]
    reason: str
    consumer: str
    failed_at: datetime
    attempts: int = 1

    @classmethod
    def of_record(cls, record: Any, *, error_kind: str, reason: str, consumer: str, attempts: int = 1) -> DeadLetter:
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
            }
        )

    def original_value(self) -> bytes:
        return base64.b64decode(self.value) if self.value_encoding == "base64" else self.value.encode()
