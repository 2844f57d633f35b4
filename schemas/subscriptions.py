"""People's own subscriptions (Reach): someone asks to hear of threads about a record, a project
or a keyword. Keyed by `Subscription.key` on a compacted topic, so the topic holds each one's
latest state; every streams worker reads all of them (streams/subscriptions.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

SubscriptionKind = Literal["record", "project", "keyword"]


class Subscription(BaseModel):
    """One person's wish to be told, in the thread, when a thread names `value`."""

    kind: Literal["subscription"] = "subscription"
    platform: str = Field(description="The social connector the person is on, e.g. slack.")
    workspace: str
    user_id: str = Field(description="The person's id on that platform (who is mentioned).")
    user_name: str | None = None
    about: SubscriptionKind = Field(description="record: a record id; project: a key prefix; keyword: a word.")
    value: str = Field(min_length=1, max_length=100, description="jira:SUP-7, jira:SUP, or a word (lower case).")
    active: bool = Field(default=True, description="False: unsubscribed (the compacted topic keeps the latest).")

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.workspace}:{self.user_id}|{self.about}:{self.value}"
