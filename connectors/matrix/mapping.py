"""Matrix client-server events (as an application service receives them) -> social event
envelopes (schemas/social.py), the same shapes Slack's produce.

Threads: a reply carries `m.relates_to = {"rel_type": "m.thread", "event_id": root}`; any other
message is the root of its own thread. Edits (`m.replace`), redactions and reactions
(`m.annotation`) name only the event they act on, so the room state below remembers which
thread each message is in (bounded: the oldest are forgotten first, and an unknown target is
taken as its own thread root).

Visibility from the room's state events: a room anyone may join (join rule `public`) or read
(history `world_readable`) is `public` -- on a federating homeserver that is anyone on the
internet; an invite-only, knock or restricted room is `restricted`; an encrypted room is
`restricted` and its messages (`m.room.encrypted`) cannot be read at all. A room whose state
has not been seen yet is `restricted`: the safe side.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from schemas import events
from schemas.envelope import Envelope
from schemas.social import (
    Author,
    ChannelRef,
    SocialChannelChange,
    SocialMembership,
    SocialMessage,
    SocialReaction,
    ThreadRef,
)
from schemas.visibility import Visibility

log = logging.getLogger(__name__)

MatrixEvent = SocialMessage | SocialReaction | SocialMembership | SocialChannelChange
MAX_REMEMBERED_MESSAGES = 50_000


@dataclass
class RoomState:
    join_rule: str | None = None
    history_visibility: str | None = None
    encrypted: bool = False
    encryption_logged: bool = False

    @property
    def visibility(self) -> Visibility:
        if self.encrypted:
            return "restricted"
        if self.join_rule == "public" or self.history_visibility == "world_readable":
            return "public"
        return "restricted"


@dataclass
class MatrixState:
    """What the connector learns from the events it sees: rooms' visibility and messages' threads."""

    server_name: str
    bot_user_id: str
    rooms: dict[str, RoomState] = field(default_factory=dict)
    threads: OrderedDict[str, str] = field(default_factory=OrderedDict)

    def room(self, room_id: str) -> RoomState:
        return self.rooms.setdefault(room_id, RoomState())

    def remember_thread(self, event_id: str, root: str) -> None:
        self.threads[event_id] = root
        self.threads.move_to_end(event_id)
        while len(self.threads) > MAX_REMEMBERED_MESSAGES:
            self.threads.popitem(last=False)

    def thread_of(self, event_id: str) -> str:
        return self.threads.get(event_id, event_id)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _author(state: MatrixState, sender: str) -> Author:
    mine = sender == state.bot_user_id
    return Author(id=sender, is_bot=mine, is_threadlink=mine)


def invited_room(event: dict[str, Any], *, bot_user_id: str) -> str | None:
    """The room of an invitation of threadlink's own user (an `m.room.member` event whose
    `state_key` is that user, membership `invite`), else None: invitations of anyone else are
    none of threadlink's business."""
    content = event.get("content")
    if event.get("type") != "m.room.member" or not isinstance(content, dict):
        return None
    if content.get("membership") != "invite" or event.get("state_key") != bot_user_id:
        return None
    return _str(event.get("room_id"))


def social_event(event: dict[str, Any], *, platform: str, state: MatrixState) -> MatrixEvent | None:
    """The social event of one Matrix event, or None when threadlink has nothing to say about it
    (state it only learns from, encrypted messages, types it does not know)."""
    kind, room_id, sender = _str(event.get("type")), _str(event.get("room_id")), _str(event.get("sender"))
    event_id = _str(event.get("event_id"))
    content = event.get("content")
    if kind is None or room_id is None or sender is None or event_id is None or not isinstance(content, dict):
        return None
    room = state.room(room_id)
    channel = ChannelRef(platform=platform, workspace=state.server_name, channel=room_id)
    if kind == "m.room.join_rules":
        room.join_rule = _str(content.get("join_rule"))
        return _visibility_change(channel, room, state, sender)
    if kind == "m.room.history_visibility":
        room.history_visibility = _str(content.get("history_visibility"))
        return _visibility_change(channel, room, state, sender)
    if kind == "m.room.encryption":
        room.encrypted = True
        return _visibility_change(channel, room, state, sender)
    if kind == "m.room.encrypted":
        room.encrypted = True
        if not room.encryption_logged:
            room.encryption_logged = True
            log.warning("matrix: room %s is encrypted; threadlink cannot read its messages and skips them", room_id)
        return None
    if kind == "m.room.member":
        membership = content.get("membership")
        member = _str(event.get("state_key")) or sender
        if membership not in ("join", "leave", "ban"):
            return None  # invites and knocks are not yet memberships
        action = "joined" if membership == "join" else "left"
        return SocialMembership(
            channel=channel, action=action, member=_author(state, member), channel_visibility=room.visibility
        )
    if kind == "m.room.message":
        return _message(event_id, content, channel, room, state, sender)
    if kind == "m.room.redaction":
        target = _str(event.get("redacts")) or _str(content.get("redacts"))
        if target is None:
            return None
        thread = _thread(channel, state.thread_of(target))
        return SocialMessage(
            thread=thread,
            message_id=target,
            action="deleted",
            author=_author(state, sender),
            channel_visibility=room.visibility,
        )
    if kind == "m.reaction":
        relation = content.get("m.relates_to")
        if not isinstance(relation, dict) or relation.get("rel_type") != "m.annotation":
            return None
        target, key = _str(relation.get("event_id")), _str(relation.get("key"))
        if target is None or key is None:
            return None
        return SocialReaction(
            thread=_thread(channel, state.thread_of(target)),
            message_id=target,
            reaction=key[:100],
            author=_author(state, sender),
            channel_visibility=room.visibility,
        )
    return None


def _thread(channel: ChannelRef, root: str) -> ThreadRef:
    return ThreadRef(platform=channel.platform, workspace=channel.workspace, channel=channel.channel, thread_id=root)


def _visibility_change(channel: ChannelRef, room: RoomState, state: MatrixState, sender: str) -> SocialChannelChange:
    return SocialChannelChange(
        channel=channel, action="visibility_changed", channel_visibility=room.visibility, actor=_author(state, sender)
    )


def _message(
    event_id: str, content: dict[str, Any], channel: ChannelRef, room: RoomState, state: MatrixState, sender: str
) -> SocialMessage | None:
    relation = content.get("m.relates_to")
    relation = relation if isinstance(relation, dict) else {}
    author = _author(state, sender)
    if relation.get("rel_type") == "m.replace":
        target = _str(relation.get("event_id"))
        new = content.get("m.new_content")
        if target is None or not isinstance(new, dict):
            return None
        return SocialMessage(
            thread=_thread(channel, state.thread_of(target)),
            message_id=target,
            action="edited",
            author=author,
            text=str(new.get("body", ""))[:40_000],
            channel_visibility=room.visibility,
        )
    root = _str(relation.get("event_id")) if relation.get("rel_type") == "m.thread" else None
    root = root or event_id
    state.remember_thread(event_id, root)
    body = content.get("body")
    return SocialMessage(
        thread=_thread(channel, root),
        message_id=event_id,
        permalink=permalink(channel.channel, event_id),
        author=author,
        text=body[:40_000] if isinstance(body, str) else "",
        channel_visibility=room.visibility,
        mentions_threadlink=isinstance(body, str) and state.bot_user_id in body,
    )


def permalink(room_id: str, event_id: str) -> str:
    """A matrix.to link to the event (appendices, "matrix.to navigation"; identifiers percent-encoded)."""
    return f"https://matrix.to/#/{quote(room_id, safe='')}/{quote(event_id, safe='')}"


def key_of(event: MatrixEvent) -> str:
    if isinstance(event, SocialMembership | SocialChannelChange):
        return event.channel.id
    return event.thread.id


def envelope_for(event: dict[str, Any], *, platform: str, state: MatrixState) -> Envelope[MatrixEvent] | None:
    """The envelope of one Matrix event; its id is `<connector>:<event id>`, the same on every
    retried transaction."""
    social = social_event(event, platform=platform, state=state)
    if social is None:
        return None
    kinds = {
        "message": events.SOCIAL_MESSAGE,
        "reaction": events.SOCIAL_REACTION,
        "membership": events.SOCIAL_MEMBERSHIP,
        "channel": events.SOCIAL_CHANNEL,
    }
    ts = event.get("origin_server_ts")
    occurred = datetime.fromtimestamp(ts / 1000, tz=UTC) if isinstance(ts, int) else None
    return Envelope.wrap(
        social,
        type=kinds[social.kind].format(action=social.action),
        source_system=platform,
        subject=key_of(social),
        id=f"{platform}:{event['event_id']}",
        occurred_at=occurred,
        visibility=social.channel_visibility,
    )
