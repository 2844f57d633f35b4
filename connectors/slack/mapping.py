"""Slack Events API payloads -> SocialMessage envelopes, and who threadlink is on Slack.

Pure functions, apart from `SlackIdentity.resolve` (one auth.test call).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from connectors.errors import SkippableError
from connectors.runtime.payloads import epoch_time
from schemas import events
from schemas.envelope import Envelope
from schemas.social import Author, SocialMessage, ThreadRef
from schemas.visibility import Visibility

log = logging.getLogger(__name__)

Action = Literal["posted", "edited", "deleted"]

#: `message` subtypes that are someone saying something in a thread (no subtype: a plain message).
POSTED_SUBTYPES = frozenset({None, "bot_message", "thread_broadcast", "me_message", "file_share"})

#: Slack's channel_type -> who can read what is said there (schemas/visibility.py): a public
#: channel is open to the whole workspace, i.e. the organisation.
CHANNEL_VISIBILITY: dict[str, Visibility] = {
    "channel": "internal",
    "group": "restricted",  # private channel
    "im": "restricted",
    "mpim": "restricted",
}


@dataclass
class SlackIdentity:
    """threadlink's own identity in the workspace, shared by the source (to mark its own
    messages, so streams never answer them: no loops) and the sink.

    Ids that are not configured are learned with auth.test by `resolve()`, which the source's
    and the sink's `start()` both call; it asks Slack once.
    """

    bot_user_id: str | None = None
    bot_id: str | None = None
    app_id: str | None = None
    team_id: str | None = None
    workspace_url: str | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False, compare=False)
    _resolved: bool = field(default=False, repr=False, compare=False)

    @property
    def complete(self) -> bool:
        return self.bot_user_id is not None and self.bot_id is not None and self.workspace_url is not None

    async def resolve(self, client: Any) -> None:
        """Fill in the ids auth.test knows (`user_id`, `bot_id`, `team_id`); configured ones win.
        Raises the client's ConnectorError (FatalError for a bad token) if Slack says no."""
        async with self._lock:
            if self._resolved or self.complete:
                self._resolved = True
                return
            answer = await client.auth_test()
            self.bot_user_id = self.bot_user_id or answer.get("user_id")
            self.bot_id = self.bot_id or answer.get("bot_id")
            self.team_id = self.team_id or answer.get("team_id")
            self.workspace_url = self.workspace_url or answer.get("url")
            self._resolved = True
            log.info("slack identity: bot user %s, bot %s, app %s", self.bot_user_id, self.bot_id, self.app_id)

    def permalink(self, channel: str, ts: str, thread_ts: str) -> str | None:
        """Slack's link format for a message (a reply carries its thread), as the client builds it."""
        if not self.workspace_url:
            return None
        link = f"{self.workspace_url.rstrip('/')}/archives/{channel}/p{ts.replace('.', '')}"
        return link if thread_ts == ts else f"{link}?thread_ts={thread_ts}&cid={channel}"

    def is_self(self, *, user: str | None, bot_id: str | None, app_id: str | None) -> bool:
        return bool(
            (user and user == self.bot_user_id)
            or (bot_id and bot_id == self.bot_id)
            or (app_id and app_id == self.app_id)
        )


def channel_visibility(channel_type: Any, *, shared_externally: bool = False) -> Visibility:
    """A channel shared with another organisation (Slack Connect) is the most public place of
    all, whatever its type: people outside the company read it."""
    if shared_externally:
        return "public"
    return CHANNEL_VISIBILITY.get(channel_type, "internal") if isinstance(channel_type, str) else "internal"


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _author(message: dict[str, Any], identity: SlackIdentity) -> Author:
    user = _str(message.get("user"))
    bot_id = _str(message.get("bot_id"))
    bot_profile = _dict(message.get("bot_profile"))
    app_id = _str(message.get("app_id")) or _str(bot_profile.get("app_id"))
    profile = _dict(message.get("user_profile"))
    display_name = (
        _str(profile.get("display_name"))
        or _str(profile.get("real_name"))
        or _str(message.get("username"))
        or _str(bot_profile.get("name"))
    )
    return Author(
        id=user or bot_id or "unknown",
        display_name=display_name,
        is_bot=bot_id is not None,
        is_threadlink=identity.is_self(user=user, bot_id=bot_id, app_id=app_id),
    )


def social_message(
    event: dict[str, Any], *, platform: str, team_id: str, identity: SlackIdentity, shared_externally: bool = False
) -> SocialMessage | None:
    """The SocialMessage a `message` event means, or None for one threadlink ignores (joins,
    topic changes, other event types, edits that did not change the text).

    Raises SkippableError when a message event lacks what every message has (channel, ts).
    """
    if event.get("type") != "message":
        return None
    subtype = event.get("subtype")
    if subtype is not None and not isinstance(subtype, str):
        return None
    action: Action
    message: dict[str, Any]
    previous: Any = None
    if subtype in POSTED_SUBTYPES:
        action, message = "posted", event
    elif subtype == "message_changed":
        if not isinstance(event.get("message"), dict):
            raise SkippableError("slack message_changed event without the changed message")
        message = event["message"]
        previous = event.get("previous_message")
        if isinstance(previous, dict) and previous.get("text") == message.get("text"):
            return None  # an unfurl or an attachment was added: nothing was said
        action = "edited"
    elif subtype == "message_deleted":
        previous = event.get("previous_message")
        message = dict(previous) if isinstance(previous, dict) else {}
        message["ts"] = event.get("deleted_ts") or message.get("ts")
        action = "deleted"
    else:
        return None

    channel = _str(event.get("channel"))
    ts = _str(message.get("ts"))
    if channel is None or ts is None:
        raise SkippableError(f"slack message event ({subtype or 'plain'}) without channel or ts")
    epoch_time(ts, what="slack message ts")  # an id, but also a time: 1e300 or NaN is no message of Slack's
    thread = ThreadRef(
        platform=platform,
        workspace=team_id,
        channel=channel,
        thread_id=_str(message.get("thread_ts")) or ts,
    )
    text = message.get("text") if action != "deleted" else ""
    previous_text = previous.get("text") if isinstance(previous, dict) else None
    return SocialMessage(
        thread=thread,
        message_id=ts,
        action=action,
        author=_author(message, identity),
        text=text if isinstance(text, str) else "",
        previous_text=previous_text if isinstance(previous_text, str) else None,
        permalink=identity.permalink(channel, ts, thread.thread_id),
        channel_visibility=channel_visibility(event.get("channel_type"), shared_externally=shared_externally),
    )


def occurred_at(payload: dict[str, Any]) -> datetime | None:
    """When Slack says it happened: `event_time` (epoch seconds), else the event's `event_ts`.
    A time that is there but out of range (1e300, NaN) is InvalidPayload: a 400."""
    for name, value in (
        ("event_time", payload.get("event_time")),
        ("event_ts", _dict(payload.get("event")).get("event_ts")),
    ):
        if value is not None:
            return epoch_time(value, what=f"slack {name}")
    return None


def envelope_for(payload: dict[str, Any], *, platform: str, identity: SlackIdentity) -> Envelope[SocialMessage] | None:
    """The envelope of one `event_callback` payload, or None when threadlink ignores it.
    Its id is `<connector name>:<event_id>`: Slack's redeliveries share it."""
    event = payload.get("event")
    event_id = _str(payload.get("event_id"))
    team_id = _str(payload.get("team_id")) or identity.team_id
    if not isinstance(event, dict) or event_id is None or team_id is None:
        raise SkippableError("slack event_callback without event, event_id or team_id")
    message = social_message(
        event,
        platform=platform,
        team_id=team_id,
        identity=identity,
        shared_externally=payload.get("is_ext_shared_channel") is True,
    )
    if message is None:
        return None
    return Envelope.wrap(
        message,
        type=events.SOCIAL_MESSAGE.format(action=message.action),
        source_system=platform,
        subject=message.thread.id,
        id=f"{platform}:{event_id}",
        occurred_at=occurred_at(payload),
        visibility=message.channel_visibility,
    )
