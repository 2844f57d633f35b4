"""What happens on social platforms (Slack, Matrix, ...), normalised, and the places there that
commands address.

Both social connectors produce these same shapes, so streams/ never branches on the platform.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from schemas.records import RecordRef
from schemas.visibility import Visibility


class ThreadRef(BaseModel):
    """Where a conversation lives. `id` is the Kafka key of everything about the thread."""

    kind: Literal["thread"] = "thread"
    platform: str = Field(description="Connector name, e.g. slack.")
    workspace: str = Field(description="Slack team id, Matrix homeserver, ...")
    channel: str = Field(description="Channel or room id.")
    thread_id: str = Field(description="Id of the thread's root message (Slack thread_ts, Matrix root event id).")

    @property
    def id(self) -> str:
        return f"{self.platform}:{self.workspace}:{self.channel}:{self.thread_id}"

    @property
    def channel_ref(self) -> ChannelRef:
        return ChannelRef(platform=self.platform, workspace=self.workspace, channel=self.channel)


class ChannelRef(BaseModel):
    """A channel or room as a whole (a notice that starts no thread of its own)."""

    kind: Literal["channel"] = "channel"
    platform: str
    workspace: str
    channel: str

    @property
    def id(self) -> str:
        return f"{self.platform}:{self.workspace}:{self.channel}"


class UserRef(BaseModel):
    """A person, addressed directly (a DM)."""

    kind: Literal["user"] = "user"
    platform: str
    workspace: str
    user_id: str

    @property
    def id(self) -> str:
        return f"{self.platform}:{self.workspace}:@{self.user_id}"


Place = Annotated[ThreadRef | ChannelRef | UserRef, Field(discriminator="kind")]
"""Where a command's message goes: a thread, a channel or a user."""


class Author(BaseModel):
    id: str
    display_name: str | None = None
    is_bot: bool = False
    is_threadlink: bool = Field(
        default=False, description="Posted by threadlink itself: streams never react to these (no loops)."
    )


class SharedFile(BaseModel):
    """A file shared in a message. threadlink never downloads content; the link needs the
    platform's own auth."""

    id: str
    name: str = ""
    mimetype: str | None = None
    size_bytes: int | None = Field(default=None, ge=0)
    url: str | None = Field(default=None, description="The platform's private link to it (needs its auth).")


class SocialMessage(BaseModel):
    """A message posted, edited or deleted in a thread (a channel's top-level message is the
    root of its own thread)."""

    kind: Literal["message"] = "message"
    thread: ThreadRef
    message_id: str = Field(description="Platform id of the message (Slack ts, Matrix event id).")
    action: Literal["posted", "edited", "deleted"] = "posted"
    author: Author
    text: str = Field(default="", description="Plain text (an edit carries the new text; a deletion none).")
    previous_text: str | None = Field(
        default=None, description="An edit's or deletion's earlier text, where the platform says it (Slack does)."
    )
    permalink: str | None = None
    channel_visibility: Visibility = Field(
        default="internal", description="Who can read the place it was said in (schemas/visibility.py)."
    )
    mentions_threadlink: bool = Field(default=False, description="The message addresses threadlink (@threadlink).")
    files: list[SharedFile] = Field(
        default_factory=list, max_length=20, description="Files shared with the message: metadata only, never content."
    )


class SocialReaction(BaseModel):
    """Someone added or removed a reaction (an emoji) on a message."""

    kind: Literal["reaction"] = "reaction"
    thread: ThreadRef
    message_id: str = Field(description="The message reacted to.")
    action: Literal["added", "removed"] = "added"
    reaction: str = Field(description="The reaction's name without colons (Slack), or its key (Matrix).")
    author: Author
    channel_visibility: Visibility = "internal"


class SocialMembership(BaseModel):
    """Someone (threadlink's own bot included) joined or left a channel or room. Keyed by the
    channel's id."""

    kind: Literal["membership"] = "membership"
    channel: ChannelRef
    action: Literal["joined", "left"] = "joined"
    member: Author
    channel_visibility: Visibility = "internal"


class SocialChannelChange(BaseModel):
    """A channel or room was created, renamed, archived or unarchived, or who may read it
    changed. Keyed by the channel's id."""

    kind: Literal["channel"] = "channel"
    channel: ChannelRef
    action: Literal["created", "renamed", "archived", "unarchived", "visibility_changed"]
    name: str | None = Field(default=None, description="The channel's name after the change.")
    channel_visibility: Visibility = "internal"
    actor: Author | None = None


class SocialAction(BaseModel):
    """Someone pressed a button on a card threadlink posted (Slack `block_actions`, a Matrix
    reaction on a card's option): a request for a flow, e.g. follow or open as ticket."""

    kind: Literal["action"] = "action"
    thread: ThreadRef
    message_id: str = Field(description="The card's platform message id.")
    action_id: str = Field(description="Which control, e.g. threadlink.follow or threadlink.open_ticket.")
    value: str | None = Field(default=None, max_length=2000, description="The control's value, e.g. a record id.")
    author: Author
    channel_visibility: Visibility = "internal"


class ThreadTimer(BaseModel):
    """A thread's step of its first-answer SLA is due (Reach). The streams workers send it to the
    thread's key when the step's time has come; the thread's state decides whether it still
    applies (nobody has answered, the step was not taken yet)."""

    kind: Literal["timer"] = "timer"
    thread: ThreadRef
    step: int = Field(ge=0, description="Which step of the thread's SLA tier is due (0: the first).")
    due_at: datetime = Field(description="When the step was due.")
    channel_visibility: Visibility = "internal"


class ThreadLinked(BaseModel):
    """A thread names a record threadlink knows (the link flow sends it to the thread's key, once
    per thread and record): what Reach's rules on record kinds and labels match, since a
    message's own event does not know the records it names yet."""

    kind: Literal["linked"] = "linked"
    thread: ThreadRef
    message_id: str = Field(description="The message that named the record.")
    permalink: str | None = None
    record: RecordRef
    record_kind: str = Field(max_length=40, description="ticket, article, production_order, machine_state.")
    labels: list[str] = Field(default_factory=list, max_length=50, description="The record's labels or tags.")
    project: str | None = None
    record_visibility: Visibility = "internal"
    channel_visibility: Visibility = "internal"


SocialEvent = Annotated[
    SocialMessage | SocialReaction | SocialMembership | SocialChannelChange | SocialAction | ThreadTimer | ThreadLinked,
    Field(discriminator="kind"),
]
"""What the social events topic carries: thread events keyed by thread id, channel events
(membership, channel changes) by channel id."""
