"""Where a poll of a listing ordered by update time got to, for pollers whose platform filters
by `updated >= since` at a coarser grain than it stamps (whole seconds, minutes): the next poll
asks again from the newest time published and skips the keys it published at exactly that time.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from schemas.envelope import Envelope
from schemas.records import RecordComment, RecordEvent

T = TypeVar("T", int, str)


class UpdatedSince(Generic[T]):
    """`since` and `seen` come from the checkpointed cursor; `published(key, at)` for each item
    the poll publishes; `cursor(...)` is the next one. A poll that read its pages without
    getting past `since` (more items of one instant than a poll reads) keeps `offset`, where the
    next goes on with the listing."""

    def __init__(self, since: T, seen: dict[str, T], *, field: str) -> None:
        self.since: T = since
        self.seen: dict[str, T] = seen
        self.field = field
        self.newest: T = since
        self.newest_seen: dict[str, T] = dict(seen)

    def already_published(self, key: str, at: T) -> bool:
        return self.seen.get(key) == at

    def published(self, key: str, at: T) -> None:
        if at > self.newest:
            self.newest, self.newest_seen = at, {}
        if at == self.newest:
            self.newest_seen[key] = at

    def cursor(self, *, more: bool, offset: int) -> dict[str, Any]:
        cursor: dict[str, Any] = {self.field: self.newest, "seen": self.newest_seen}
        if more and self.newest == self.since:
            cursor["offset"] = offset
        return cursor


def polled_event(
    connector: str, topic: str, data: Any, type: str, event_id: str, at: Any
) -> tuple[str, str, Envelope[Any]]:
    """(topic, key, envelope) of a record or comment a poll found: keyed and identified by the
    connector's name, so a second poll of the same version is recognisable downstream."""
    model = RecordComment if isinstance(data, RecordComment) else RecordEvent
    envelope = Envelope[model].wrap(  # type: ignore[valid-type]
        data,
        type=type,
        source_system=connector,
        subject=data.ref.id,
        id=f"{connector}:{event_id}",
        occurred_at=at,
        visibility=data.visibility,
    )
    return topic, data.ref.id, envelope
