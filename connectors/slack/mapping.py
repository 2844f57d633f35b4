"""Slack Events API payloads -> social event envelopes (schemas/social.py), and who threadlink is on Slack.

Pure functions, apart from `SlackIdentity.resolve` (one auth.test call).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeAlias

from connectors.errors import SkippableError
from connectors.runtime.payloads import epoch_time
from schemas import events
from schemas.envelope import Envelope
from schemas.social import (
    Author,
    ChannelRef,
    SharedFile,
    SocialChannelChange,
    SocialMembership,
    SocialMessage,
    SocialReaction,
    ThreadRef,
)
from schemas.visibility import Visibility

log = logging.getLogger(__name__)

Action = Literal["posted", "edited", "deleted"]
ChannelAction = Literal["created", "renamed", "archived", "unarchived"]

#: The contract's limit (schemas/social.py): a message with more files keeps the first ones.
MAX_FILES_PER_MESSAGE = 20

#: `message` subtypes that are someone saying something in a thread (no subtype: a plain message).
POSTED_SUBTYPES = frozenset({None, "bot_message", "thread_broadcast", "me_message", "file_share"})

#: Slack's channel_type -> who can read what is said there (schemas/visibility.py): a public
#: channel is open to the whole workspace, i.e. the organisation.
CHANNEL_VISIBILITY: dict[str, Visibility] = {
    "channel": "internal",
    "group": "restricted",  # private channel
    "im": "restricted",
    "mpim": "restricted",
    # member_joined_channel and member_left_channel say it with a letter.
    "C": "internal",
    "G": "restricted",
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


def bot_ids(event: dict[str, Any]) -> set[str]:
    """The bot and app ids a message event names (an edit's are the edited message's)."""
    message = _dict(event.get("message")) if event.get("subtype") == "message_changed" else event
    ids = {
        _str(message.get("bot_id")),
        _str(message.get("app_id")),
        _str(_dict(message.get("bot_profile")).get("app_id")),
    }
    return {bot for bot in ids if bot}


def from_ignored_bot(event: dict[str, Any], ignored: set[str]) -> bool:
    """Whether a message event is from one of the `ignored` bots (config `ignore_bots`; "*": any)."""
    if not ignored or event.get("type") not in ("message", "app_mention"):
        return False
    bots = bot_ids(event)
    return bool(bots) and ("*" in ignored or bool(bots & ignored))


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


def _files(message: dict[str, Any]) -> list[SharedFile]:
    """Metadata of the files shared with a message (never their content), at most what the
    contract holds; a file Slack describes without an id is not a file anyone can find."""
    files = message.get("files")
    if not isinstance(files, list):
        return []
    shared = []
    for item in files[:MAX_FILES_PER_MESSAGE]:
        file = _dict(item)
        file_id = _str(file.get("id"))
        if file_id is None:
            continue
        size = file.get("size")
        shared.append(
            SharedFile(
                id=file_id,
                name=(_str(file.get("name")) or _str(file.get("title")) or "")[:500],
                mimetype=_str(file.get("mimetype")),
                size_bytes=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
                url=_str(file.get("url_private")) or _str(file.get("permalink")),
            )
        )
    return shared


def _mentions(text: str, identity: SlackIdentity) -> bool:
    """Slack writes a mention of a user as `<@U123>` (or `<@U123|name>`) in the text."""
    return identity.bot_user_id is not None and f"<@{identity.bot_user_id}" in text


def social_message(
    event: dict[str, Any], *, platform: str, team_id: str, identity: SlackIdentity, shared_externally: bool = False
) -> SocialMessage | None:
    """The SocialMessage a `message` (or `app_mention`) event means, or None for one threadlink
    ignores (joins, topic changes, edits that did not change the text).

    Raises SkippableError when a message event lacks what every message has (channel, ts).
    """
    subtype = event.get("subtype")
    if subtype is not None and not isinstance(subtype, str):
        return None
    action: Action
    message: dict[str, Any]
    previous: Any = None
    if event.get("type") == "app_mention" or subtype in POSTED_SUBTYPES:
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
        raise SkippableError(f"slack {event.get('type')} event ({subtype or 'plain'}) without channel or ts")
    epoch_time(ts, what="slack message ts")  # an id, but also a time: 1e300 or NaN is no message of Slack's
    thread = ThreadRef(
        platform=platform,
        workspace=team_id,
        channel=channel,
        thread_id=_str(message.get("thread_ts")) or ts,
    )
    text = message.get("text") if action != "deleted" else ""
    text = text if isinstance(text, str) else ""
    previous_text = previous.get("text") if isinstance(previous, dict) else None
    return SocialMessage(
        thread=thread,
        message_id=ts,
        action=action,
        author=_author(message, identity),
        text=text,
        previous_text=previous_text if isinstance(previous_text, str) else None,
        permalink=identity.permalink(channel, ts, thread.thread_id),
        channel_visibility=channel_visibility(event.get("channel_type"), shared_externally=shared_externally),
        mentions_threadlink=event.get("type") == "app_mention" or _mentions(text, identity),
        files=_files(message) if action != "deleted" else [],
    )


def social_reaction(
    event: dict[str, Any], *, platform: str, team_id: str, identity: SlackIdentity, shared_externally: bool = False
) -> SocialReaction | None:
    """`reaction_added` / `reaction_removed` on a message (reactions on files are ignored).

    Slack does not say which thread the message is in: the thread id here is the message's own
    ts, which the source corrects for a reply (connectors/slack/threads.py)."""
    item = _dict(event.get("item"))
    if item.get("type") != "message":
        return None
    channel, ts, reaction = _str(item.get("channel")), _str(item.get("ts")), _str(event.get("reaction"))
    if channel is None or ts is None or reaction is None:
        raise SkippableError(f"slack {event.get('type')} event without item channel, item ts or reaction")
    epoch_time(ts, what="slack reaction item ts")
    user = _str(event.get("user")) or "unknown"
    return SocialReaction(
        thread=ThreadRef(platform=platform, workspace=team_id, channel=channel, thread_id=ts),
        message_id=ts,
        action="added" if event.get("type") == "reaction_added" else "removed",
        reaction=reaction[:100],
        author=Author(id=user, is_threadlink=identity.is_self(user=user, bot_id=None, app_id=None)),
        channel_visibility=channel_visibility(event.get("channel_type"), shared_externally=shared_externally),
    )


def social_membership(
    event: dict[str, Any], *, platform: str, team_id: str, identity: SlackIdentity, shared_externally: bool = False
) -> SocialMembership:
    channel, user = _str(event.get("channel")), _str(event.get("user"))
    if channel is None or user is None:
        raise SkippableError(f"slack {event.get('type')} event without channel or user")
    return SocialMembership(
        channel=ChannelRef(platform=platform, workspace=team_id, channel=channel),
        action="joined" if event.get("type") == "member_joined_channel" else "left",
        member=Author(id=user, is_threadlink=identity.is_self(user=user, bot_id=None, app_id=None)),
        channel_visibility=channel_visibility(event.get("channel_type"), shared_externally=shared_externally),
    )


#: Slack's channel event type -> (what happened, whose channel type: `group_*` are private channels).
CHANNEL_EVENTS: dict[str, tuple[ChannelAction, str]] = {
    "channel_created": ("created", "channel"),
    "channel_rename": ("renamed", "channel"),
    "channel_archive": ("archived", "channel"),
    "channel_unarchive": ("unarchived", "channel"),
    "group_rename": ("renamed", "group"),
    "group_archive": ("archived", "group"),
    "group_unarchive": ("unarchived", "group"),
}


def social_channel_change(
    event: dict[str, Any], *, platform: str, team_id: str, identity: SlackIdentity, shared_externally: bool = False
) -> SocialChannelChange:
    """channel_created and *_rename carry the channel as an object; *_archive and *_unarchive as an id."""
    action, channel_type = CHANNEL_EVENTS[str(event.get("type"))]
    described = _dict(event.get("channel"))
    channel = _str(described.get("id")) if described else _str(event.get("channel"))
    if channel is None:
        raise SkippableError(f"slack {event.get('type')} event without a channel id")
    actor = _str(event.get("user")) or _str(described.get("creator"))
    name = _str(described.get("name"))
    return SocialChannelChange(
        channel=ChannelRef(platform=platform, workspace=team_id, channel=channel),
        action=action,
        name=name[:200] if name else None,
        channel_visibility=channel_visibility(channel_type, shared_externally=shared_externally),
        actor=Author(id=actor, is_threadlink=identity.is_self(user=actor, bot_id=None, app_id=None)) if actor else None,
    )


SlackEvent: TypeAlias = SocialMessage | SocialReaction | SocialMembership | SocialChannelChange

MAPPERS: dict[str, Callable[..., SlackEvent | None]] = {
    "message": social_message,
    "app_mention": social_message,
    "reaction_added": social_reaction,
    "reaction_removed": social_reaction,
    "member_joined_channel": social_membership,
    "member_left_channel": social_membership,
    **dict.fromkeys(CHANNEL_EVENTS, social_channel_change),
}
"""Every Events API event type threadlink understands (the app subscribes to these)."""


def social_event(
    event: dict[str, Any], *, platform: str, team_id: str, identity: SlackIdentity, shared_externally: bool = False
) -> SlackEvent | None:
    """The social event a Slack event means, or None for a type threadlink does not act on."""
    mapper = MAPPERS.get(event.get("type") if isinstance(event.get("type"), str) else "")  # type: ignore[arg-type]
    if mapper is None:
        return None
    return mapper(event, platform=platform, team_id=team_id, identity=identity, shared_externally=shared_externally)


def key_of(event: SlackEvent) -> str:
    """The Kafka key: a thread's events by thread, a channel's by channel (schemas/social.py)."""
    if isinstance(event, SocialMembership | SocialChannelChange):
        return event.channel.id
    return event.thread.id


def event_type(event: SlackEvent) -> str:
    return {
        "message": events.SOCIAL_MESSAGE,
        "reaction": events.SOCIAL_REACTION,
        "membership": events.SOCIAL_MEMBERSHIP,
        "channel": events.SOCIAL_CHANNEL,
    }[event.kind].format(action=event.action)


def same_message_key(event: SlackEvent) -> str | None:
    """With both `message.*` and `app_mention` subscribed, Slack sends a message that mentions
    the app twice, under two event ids; this key is the same for both (the source publishes
    the first)."""
    if isinstance(event, SocialMessage) and event.action == "posted":
        return f"message:{event.thread.channel}:{event.message_id}"
    return None


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


def envelope_for(payload: dict[str, Any], *, platform: str, identity: SlackIdentity) -> Envelope[SlackEvent] | None:
    """The envelope of one `event_callback` payload, or None when threadlink ignores it.
    Its id is `<connector name>:<event_id>`: Slack's redeliveries share it."""
    event = payload.get("event")
    event_id = _str(payload.get("event_id"))
    team_id = _str(payload.get("team_id")) or identity.team_id
    if not isinstance(event, dict) or event_id is None or team_id is None:
        raise SkippableError("slack event_callback without event, event_id or team_id")
    social = social_event(
        event,
        platform=platform,
        team_id=team_id,
        identity=identity,
        shared_externally=payload.get("is_ext_shared_channel") is True,
    )
    if social is None:
        return None
    return Envelope.wrap(
        social,
        type=event_type(social),
        source_system=platform,
        subject=key_of(social),
        id=f"{platform}:{event_id}",  # Slack's redeliveries share it
        occurred_at=occurred_at(payload),
        visibility=social.channel_visibility,
    )
