"""Links between threads and records: the request that makes or drops one, and the link's state
as others may read it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from schemas.records import RecordRef
from schemas.social import ThreadRef
from schemas.visibility import Visibility


class LinkRequest(BaseModel):
    """A message named a record (`link`), or no longer does (`unlink`: it was edited or deleted,
    and no other message of the thread names it). Re-keyed by record, so it meets the record."""

    action: Literal["link", "unlink"] = "link"
    thread: ThreadRef
    message_id: str
    record: RecordRef
    permalink: str | None = None
    channel_visibility: Visibility = "internal"
    may_fetch: bool = Field(
        default=True, description="Whether an unknown record may be looked up (a message's fetches are capped)."
    )
    mirror_comments: bool = Field(
        default=False,
        description="The thread was escalated into this record: its public comments are said in the thread too.",
    )


LinkStatus = Literal["requested", "posted", "failed", "hidden", "removed"]


class Link(BaseModel):
    """Which thread discusses which record, and how its card is doing (the `links` topic,
    compacted by `thread id|record id`: its latest state per link)."""

    thread: ThreadRef
    record: RecordRef
    status: LinkStatus = Field(
        description="requested: card asked for; posted: card shown; failed: the card could not be posted (see "
        "reason); hidden: not shown there (visibility); removed: the message that named it is gone."
    )
    message_id: str = Field(description="The message that named the record.")
    card_message_id: str | None = Field(default=None, description="Platform id of the card, once posted.")
    version_shown: int | None = Field(default=None, description="The record version the card shows.")
    reason: str | None = None
    updated_at: datetime

    @property
    def id(self) -> str:
        return link_id(self.thread, self.record)


def link_id(thread: ThreadRef, record: RecordRef) -> str:
    return f"{thread.id}|{record.id}"
