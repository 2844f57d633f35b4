"""What the flows remember, per key, in their tables (streams/tables.py).

- `RecordState`, by record id: the record's latest state, the cards that show it (which thread,
  its platform message id, the version it shows), the mentions waiting for it to be fetched.
- `ThreadState`, by thread id: which records each message of the thread named, so an edit or a
  deletion knows what it takes back; the last messages people said (a ticket's transcript,
  `streams.escalate.transcript_messages` at most, dropped once the thread has its ticket), and
  the thread's ticket (Escalate).

Both are bounded: a record keeps at most `MAX_CARDS` cards (the least recently mentioned go
first) and `MAX_WAITING` waiting mentions; a thread keeps the records of its last
`MAX_MESSAGES` messages that named any. Times are event times (epoch milliseconds taken from
the events themselves), never the wall clock, so reprocessing decides the same.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, TypeAdapter

from schemas.records import Record, RecordRef
from schemas.social import SocialMessage, ThreadRef
from schemas.visibility import Visibility

MAX_CARDS = 100
MAX_WAITING = 100
MAX_MESSAGES = 200
#: A line of a thread's transcript keeps this many characters; pending replies at most MAX_PENDING.
MAX_LINE = 1000
MAX_PENDING = 50
MAX_SUGGESTED = 20
MAX_EXCERPT = 300

CardStatus = Literal["requested", "posted", "failed", "hidden", "removed"]


class Card(BaseModel):
    """One record's card in one thread."""

    thread: ThreadRef
    place_visibility: Visibility
    status: CardStatus
    mentioned_by: list[str] = Field(default_factory=list, description="Messages of the thread that name the record.")
    permalink: str | None = None
    generation: int = Field(default=0, description="Counts re-posts after a removal: each is a new PostCard.")
    card_message_id: str | None = None
    version_shown: int | None = None
    digest_shown: str | None = None
    version_sent: int | None = Field(default=None, description="Latest version sent in a post or update.")
    digest_sent: str | None = None
    notified: dict[str, str] = Field(
        default_factory=dict, description="The notified fields' values (streams.follow.notify_fields) last sent."
    )
    reason: str | None = None
    mentioned_at: int = Field(default=0, description="Event time of the latest mention (epoch ms).")
    mirror: bool = Field(
        default=False, description="The thread was escalated into the record: its comments are said there."
    )


class Waiting(BaseModel):
    """A mention of a record nobody has seen yet, waiting for its fetch."""

    thread: ThreadRef
    message_id: str
    permalink: str | None = None
    place_visibility: Visibility
    traceparent: str | None = None
    mentioned_at: int = 0
    mirror: bool = False


class LastComment(BaseModel):
    author: str | None = None
    excerpt: str
    version: int
    visibility: Visibility = "internal"


class RecordState(BaseModel):
    record: Record | None = None
    missing: str | None = Field(default=None, description="Why the record does not exist, when it does not.")
    missing_version: int = 0
    missing_at: int = Field(default=0, description="Event time the record was found missing (epoch ms).")
    last_comment: LastComment | None = None
    cards: dict[str, Card] = Field(default_factory=dict, description="By thread id.")
    waiting: list[Waiting] = Field(default_factory=list)
    fetch_attempt: int = 0
    fetch_status: Literal["requested", "failed"] | None = None

    @property
    def version(self) -> int:
        if self.record is not None:
            return self.record.version
        return self.missing_version

    def trim(self) -> list[str]:
        """Keep the bounds; returns the thread ids of the cards dropped (least recently mentioned)."""
        dropped: list[str] = []
        if len(self.cards) > MAX_CARDS:
            by_age = sorted(self.cards, key=lambda thread_id: self.cards[thread_id].mentioned_at)
            dropped = by_age[: len(self.cards) - MAX_CARDS]
            for thread_id in dropped:
                del self.cards[thread_id]
        if len(self.waiting) > MAX_WAITING:
            self.waiting = self.waiting[-MAX_WAITING:]
        return dropped


class Line(BaseModel):
    """One message of a thread, as a ticket's transcript quotes it."""

    message_id: str
    author: str
    text: str = Field(max_length=MAX_LINE)

    @classmethod
    def of(cls, message: SocialMessage) -> Line:
        """The message as a transcript quotes it: its author's name, its text cut to MAX_LINE."""
        text = message.text if len(message.text) <= MAX_LINE else message.text[: MAX_LINE - 1] + "…"
        return cls(message_id=message.message_id, author=message.author.display_name or message.author.id, text=text)


class Escalation(BaseModel):
    """The thread's ticket: asked for (one command, whoever asks again), opened, or refused."""

    status: Literal["requested", "opened", "failed"]
    attempt: int = 1
    target: str
    thread: ThreadRef
    place_visibility: Visibility = "internal"
    ticket: RecordRef | None = None
    url: str | None = None
    reason: str | None = None
    pending: list[Line] = Field(
        default_factory=list, description="Replies said while the ticket was being opened: its first comments."
    )


class Reach(BaseModel):
    """Reach in this thread: the routing rules that fired, and its first-answer SLA."""

    routed: list[str] = Field(default_factory=list, description="Rules that fired here (each fires once).")
    told: list[str] = Field(default_factory=list, description="Subscribers mentioned here (the last 200).")
    thread: ThreadRef | None = None
    tier: str | None = Field(default=None, description="The SLA tier watching the thread; unset: none.")
    opener: str | None = Field(default=None, description="Who started the thread: their replies are no answer.")
    started_at: int = 0
    steps_done: int = 0
    due_at: int | None = Field(default=None, description="When the next step is due (epoch ms); unset: none.")
    answered_at: int | None = None
    excerpt: str = Field(default="", max_length=MAX_EXCERPT)
    permalink: str | None = None
    place_visibility: Visibility = "internal"


class ThreadState(BaseModel):
    named: dict[str, list[str]] = Field(
        default_factory=dict, description="Message id -> the record ids it names (messages that name none: absent)."
    )
    transcript: list[Line] = Field(
        default_factory=list, description="The last messages people said (until the thread has a ticket)."
    )
    escalation: Escalation | None = None
    suggested: list[str] = Field(default_factory=list, description="Articles Know suggested here (the last 20).")
    drafted: bool = Field(default=False, description="Know asked for this thread's draft article (it was resolved).")
    permalink: str | None = Field(default=None, description="The link of the first message heard with one.")
    reach: Reach | None = None

    def suggest(self, record_ids: list[str]) -> None:
        self.suggested = [*self.suggested, *record_ids][-MAX_SUGGESTED:]

    def heard(self, line: Line, keep: int, *, permalink: str | None = None) -> None:
        self.transcript = [*[old for old in self.transcript if old.message_id != line.message_id], line][-keep:]
        self.permalink = self.permalink or permalink

    def records_named_elsewhere(self, message_id: str) -> set[str]:
        return {ref for other, refs in self.named.items() if other != message_id for ref in refs}

    def remember(self, message_id: str, record_ids: list[str]) -> None:
        if record_ids:
            self.named[message_id] = record_ids
        else:
            self.named.pop(message_id, None)
        while len(self.named) > MAX_MESSAGES:
            del self.named[next(iter(self.named))]


RECORD_STATE = TypeAdapter(RecordState)
THREAD_STATE = TypeAdapter(ThreadState)
