"""Messages from social platforms (Slack, Matrix, ...), normalised."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ThreadRef(BaseModel):
    """Where a conversation lives. `id` is the Kafka key of everything about the thread."""

    platform: str = Field(description="Connector name, e.g. slack.")
    workspace: str = Field(description="Slack team id, Matrix homeserver, ...")
    channel: str = Field(description="Channel or room id.")
    thread_id: str = Field(description="Id of the thread's root message (Slack thread_ts).")

    @property
    def id(self) -> str:
        return f"{self.platform}:{self.workspace}:{self.channel}:{self.thread_id}"


class Author(BaseModel):
    id: str
    display_name: str | None = None
    is_bot: bool = False
    is_threadlink: bool = Field(
        default=False, description="Posted by threadlink itself: streams never react to these (no loops)."
    )


class SocialMessage(BaseModel):
    thread: ThreadRef
    message_id: str = Field(description="Platform id of the message (Slack ts, Matrix event id).")
    action: Literal["posted", "edited", "deleted"] = "posted"
    author: Author
    text: str = ""
    permalink: str | None = None
    channel_visibility: Literal["public", "internal", "restricted"] = Field(
        default="internal", description="public channel, members-only channel, or restricted/private room."
    )
