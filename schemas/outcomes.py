"""What a sink did with a command, reported back to streams: the loop from side effects to flows.

Sinks publish one `Outcome` per command they finish (done, failed for good, or superseded by a
newer one) to the outcomes topic, keyed by the command's `reply_key`. Streams read it to learn
a card's platform message id, a created ticket's key, or that a card could not be posted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from schemas.commands import CommandKind
from schemas.records import RecordRef
from schemas.social import Place

ErrorKind = Literal["fatal", "skippable", "retries_exhausted", "invalid"]
OutcomeStatus = Literal["done", "failed", "superseded"]


class Effect(BaseModel):
    """What a side effect made on its platform (all optional: each command kind fills its own)."""

    message_id: str | None = Field(default=None, description="Platform id of the message posted or updated.")
    comment_id: str | None = None
    created: RecordRef | None = Field(default=None, description="The record created (a ticket, an article).")
    url: str | None = None
    found: bool | None = Field(default=None, description="fetch_record: whether the record exists.")
    recovered: bool = Field(
        default=False, description="Found on the platform after an attempt whose outcome was unknown."
    )
    skipped: str | None = Field(default=None, description="Done without a side effect, and why.")


class Outcome(BaseModel):
    command_id: str
    command_kind: CommandKind
    target: str
    status: OutcomeStatus
    effect: Effect | None = Field(default=None, description="What was made (done only).")
    error_kind: ErrorKind | None = None
    reason: str | None = Field(default=None, description="Why it failed, for a person.")
    destination: Place | None = Field(default=None, description="Echoed from the command.")
    record: RecordRef | None = Field(default=None, description="Echoed from the command.")
    version: int | None = Field(default=None, description="The record version the command showed.")
    redelivered: bool = Field(default=False, description="Done before: this repeats the earlier outcome.")
    completed_at: datetime
