"""Links between threads and records, and the request that creates one."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from schemas.records import RecordRef
from schemas.social import ThreadRef


class LinkRequest(BaseModel):
    """A message mentioned a record; re-keyed by record so it meets the record table."""

    thread: ThreadRef
    message_id: str
    record: RecordRef
    permalink: str | None = None
    channel_visibility: str = "internal"


class Link(BaseModel):
    thread: ThreadRef
    record: RecordRef
    message_id: str = Field(description="The message that mentioned the record.")
    created_at: datetime

    @property
    def id(self) -> str:
        return f"{self.thread.id}|{self.record.id}"
