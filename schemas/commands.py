"""Commands from streams to sinks: the side effects threadlink wants done on a platform.

Each carries a deterministic `command_id`: the same decision always gives the same id, so a
command delivered or emitted twice has its side effect once (sinks keep a ledger of done ids).
Ids of updates include the version they show, so each new version is its own side effect and a
redelivered one is not.

Every command is answered by an `Outcome` (schemas/outcomes.py) on the outcomes topic, under
`reply_key`: that is how streams learn a card's platform message id, or that it failed for good.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from schemas.records import Record, RecordRef
from schemas.social import ChannelRef, Place, ThreadRef


def command_id_for(kind: str, *parts: str | int) -> str:
    """Same inputs, same id: the idempotency key of a side effect."""
    digest = hashlib.sha256("\x1f".join((kind, *map(str, parts))).encode()).hexdigest()[:32]
    return f"{kind}-{digest}"


class CommandBase(BaseModel):
    command_id: str
    target: str = Field(description="Name of the connector that carries it out (its commands topic).")
    reply_key: str | None = Field(
        default=None,
        description="Kafka key of this command's outcome (the flow state it updates, e.g. the record id); "
        "unset: the command's own key.",
    )
    not_before: datetime | None = Field(
        default=None,
        description="Not carried out before this time: the window in which a newer command with the same "
        "coalesce_key can make this one unnecessary.",
    )
    coalesce_key: str | None = Field(
        default=None,
        description="Commands with the same coalesce_key (and Kafka key) replace each other: one that is still "
        "waiting when a later one arrives, or that ranks below one already done, is superseded, not carried out.",
    )
    coalesce_rank: int = Field(default=0, description="Order among commands of one coalesce_key (e.g. the version).")


class PostCard(CommandBase):
    """Post a record's card at a place (a thread, usually)."""

    kind: Literal["post_card"] = "post_card"
    destination: Place
    record: Record
    in_reply_to: str | None = Field(default=None, description="The message that mentioned the record.")
    redacted: bool = Field(default=False, description="Show only that a restricted record exists, not its content.")


class UpdateCard(CommandBase):
    """Show a newer version of a record in a card already posted."""

    kind: Literal["update_card"] = "update_card"
    destination: Place
    record: Record
    card_message_id: str = Field(description="Platform id of the card's message (from the PostCard's outcome).")
    redacted: bool = False


class DeleteCard(CommandBase):
    """Remove a card (the message that caused it was deleted, or no longer names the record)."""

    kind: Literal["delete_card"] = "delete_card"
    destination: Place
    record: RecordRef
    card_message_id: str
    reason: str


class PostMessage(CommandBase):
    """Say something at a place: a status change in a thread, a notice in a channel."""

    kind: Literal["post_message"] = "post_message"
    destination: Place
    text: str = Field(max_length=4000, description="Plain text; the sink formats it for its platform.")
    about: RecordRef | None = Field(default=None, description="The record it is about, if any.")
    mentions: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="User ids on the destination's platform to mention (notify) before the text.",
    )


class AddReaction(CommandBase):
    """React to a message (quick feedback: threadlink saw a request and is on it)."""

    kind: Literal["add_reaction"] = "add_reaction"
    destination: Place = Field(description="Where the message is (its thread or channel).")
    message_id: str = Field(description="Platform id of the message reacted to.")
    reaction: str = Field(
        pattern=r"^[a-z0-9_+-]{1,50}$",
        description="A reaction by name (Slack's names, e.g. eyes); each sink shows it its platform's way.",
    )


class AddComment(CommandBase):
    """Add a comment to a record (a back-link to the thread that discusses it)."""

    kind: Literal["add_comment"] = "add_comment"
    record: RecordRef
    body: str = Field(description="The comment's words; the sink adds the link to the thread.")
    thread: ThreadRef | None = None
    permalink: str | None = None


class CreateTicket(CommandBase):
    kind: Literal["create_ticket"] = "create_ticket"
    thread: ThreadRef
    project: str
    summary: str
    description: str = ""


class DraftArticle(CommandBase):
    """Write a resolved thread up as a draft article (a post in a content system) for an editor
    to finish: one draft per thread, found again rather than written twice."""

    kind: Literal["draft_article"] = "draft_article"
    thread: ThreadRef
    title: str = Field(min_length=1, max_length=300)
    body: str = Field(
        default="",
        max_length=20_000,
        description="Plain text, paragraphs separated by blank lines; the sink formats it for its system.",
    )
    permalink: str | None = Field(default=None, description="The thread's link, added at the end of the draft.")


class JoinRoom(CommandBase):
    """Accept an invitation: threadlink's own user joins the room (channel) it was invited to.
    Published by the source that saw the invitation, so the join is retried, rate-limited and
    done once (the ledger) like every other side effect."""

    kind: Literal["join_room"] = "join_room"
    destination: ChannelRef = Field(description="The room threadlink's user was invited to.")
    invite_id: str = Field(description="Platform id of the invitation (the command id is made from it).")


class FetchRecord(CommandBase):
    """Look a record up and publish it (or that it is missing) on the records topic."""

    kind: Literal["fetch_record"] = "fetch_record"
    record: RecordRef


Command = Annotated[
    PostCard
    | UpdateCard
    | DeleteCard
    | PostMessage
    | AddReaction
    | AddComment
    | CreateTicket
    | DraftArticle
    | JoinRoom
    | FetchRecord,
    Field(discriminator="kind"),
]

CommandKind = Literal[
    "post_card",
    "update_card",
    "delete_card",
    "post_message",
    "add_reaction",
    "add_comment",
    "create_ticket",
    "draft_article",
    "join_room",
    "fetch_record",
]
