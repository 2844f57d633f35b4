"""What happens on social platforms (Slack, Matrix, ...), normalised, and the places there that
commands address.

Both social connectors produce these same shapes, so streams/ never branches on the platform.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

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


class SocialReaction(BaseModel):
    """Someone added or removed a reaction (an emoji) on a message."""

    kind: Literal["reaction"] = "reaction"
    thread: ThreadRef
    message_id: str = Field(description="The message reacted to.")
    action: Literal["added", "removed"] = "added"
    reaction: str = Field(description="The reaction's name without colons (Slack), or its key (Matrix).")
    author: Author
    channel_visibility: Visibility = "internal"


SocialEvent = Annotated[SocialMessage | SocialReaction, Field(discriminator="kind")]
"""What the social events topic carries. New kinds (channel changes, ...) join this union."""
