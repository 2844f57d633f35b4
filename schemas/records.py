"""Records of core systems (tickets, issues, ...) and their comments."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field


class RecordRef(BaseModel):
    """A record in a core system. `id` is its Kafka key."""

    system: str = Field(description="Connector name, e.g. jira.")
    key: str = Field(description="The record's key in that system, e.g. PROJ-123.")

    @property
    def id(self) -> str:
        return f"{self.system}:{self.key}"


class TicketRecord(BaseModel):
    kind: Literal["ticket"] = "ticket"
    ref: RecordRef
    title: str
    status: str | None = None
    assignee: str | None = None
    priority: str | None = None
    project: str | None = None
    url: str | None = None
    updated_at: datetime | None = None
    visibility: Literal["public", "internal", "restricted"] = "internal"


class RecordMissing(BaseModel):
    """A looked-up record does not exist (or threadlink may not see it): waiting links are dropped."""

    kind: Literal["missing"] = "missing"
    ref: RecordRef
    reason: str


class TicketComment(BaseModel):
    ref: RecordRef
    comment_id: str
    author: str | None = None
    body: str
    public: bool = True
    created_at: datetime | None = None


RecordEvent = Annotated[TicketRecord | RecordMissing, Field(discriminator="kind")]
"""What the records topic carries: the record's latest state, or that it is missing."""
