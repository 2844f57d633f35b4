"""Every Slack event threadlink understands besides plain messages: what it becomes on the
social events topic (schemas/social.py), each payload first checked against Slack's own Events
API spec, so the shapes tested are the shapes Slack sends."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from connectors.base import ConnectorContext
from connectors.errors import SkippableError
from connectors.slack.mapping import MAPPERS, SlackIdentity
from connectors.slack.source import SlackEventsSource
from connectors.slack.threads import ThreadIndex
from sandbox.contracts.slack import SlackEventsContract
from schemas.social import SocialChannelChange, SocialMembership, SocialMessage, SocialReaction

from .conftest import APP_ID, BOT_ID, BOT_USER_ID, CHANNEL, TEAM_ID, RecordingPublisher, event_payload, make_config
from .test_slack_source import REPLY_TS, ROOT_TS, deliver, user_message

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def events_contract(slack_specs: None) -> SlackEventsContract:
    return SlackEventsContract()


class RepliesClient:
    """conversations.replies as Slack answers it for a reply's ts: the thread's root first."""

    def __init__(self, root_of: dict[str, str]) -> None:
        self.root_of = root_of
        self.calls: list[tuple[str, str]] = []

    async def conversation_replies(self, channel: str, ts: str, *, limit: int = 200) -> dict[str, Any]:
        self.calls.append((channel, ts))
        root = self.root_of.get(ts, ts)
        return {"ok": True, "messages": [{"type": "message", "ts": root, "thread_ts": root, "text": "root"}]}


@pytest.fixture
def identity() -> SlackIdentity:
    return SlackIdentity(bot_user_id=BOT_USER_ID, bot_id=BOT_ID, app_id=APP_ID, workspace_url="https://acme.slack.com/")


def make_source(ctx: ConnectorContext, identity: SlackIdentity, **config: Any) -> SlackEventsSource:
    return SlackEventsSource(make_config(**config), ctx, identity, threads=ThreadIndex(RepliesClient({})))


async def deliver_checked(
    source: SlackEventsSource, contract: SlackEventsContract, event: dict[str, Any], **payload: Any
) -> Any:
    body = event_payload(event, **payload)
    assert contract.check_event(body) == [], "the test's payload is not one Slack sends"
    return await deliver(source, body)


def reaction(kind: str, ts: str, name: str = "eyes", user: str = "U0001") -> dict[str, Any]:
    return {
        "type": kind,
        "user": user,
        "reaction": name,
        "item_user": "U0002",
        "item": {"type": "message", "channel": CHANNEL, "ts": ts},
        "event_ts": "1700000100.000100",
    }


def test_every_event_type_threadlink_maps_is_one_the_events_api_spec_has(events_contract: SlackEventsContract) -> None:
    topics = events_contract.events["topics"]
    assert {kind for kind in MAPPERS if kind.replace("_", ".") not in topics} == set()


@pytest.mark.parametrize("kind, action", [("reaction_added", "added"), ("reaction_removed", "removed")])
async def test_a_reaction_on_a_thread_root_is_a_reaction_in_that_thread(
    ctx: ConnectorContext,
    identity: SlackIdentity,
    publisher: RecordingPublisher,
    events_contract: SlackEventsContract,
    kind: str,
    action: str,
) -> None:
    source = make_source(ctx, identity)
    assert (await deliver_checked(source, events_contract, reaction(kind, ROOT_TS))).status == 200
    [published] = publisher.published
    data = published.envelope.data
    assert isinstance(data, SocialReaction)
    assert (data.action, data.reaction, data.message_id, data.author.id) == (action, "eyes", ROOT_TS, "U0001")
    assert published.key == data.thread.id == f"slack:{TEAM_ID}:{CHANNEL}:{ROOT_TS}"
    assert published.envelope.type == f"io.threadlink.social.reaction.{action}"


async def test_a_reaction_on_a_reply_is_placed_in_the_reply_s_thread_asking_slack_once(
    ctx: ConnectorContext, identity: SlackIdentity, publisher: RecordingPublisher, events_contract: SlackEventsContract
) -> None:
    client = RepliesClient({REPLY_TS: ROOT_TS})
    source = SlackEventsSource(make_config(), ctx, identity, threads=ThreadIndex(client))
    await deliver_checked(source, events_contract, reaction("reaction_added", REPLY_TS), event_id="Ev1")
    await deliver_checked(source, events_contract, reaction("reaction_removed", REPLY_TS), event_id="Ev2")
    for published in publisher.published:
        assert published.key == f"slack:{TEAM_ID}:{CHANNEL}:{ROOT_TS}"
        assert published.envelope.data.message_id == REPLY_TS
    assert client.calls == [(CHANNEL, REPLY_TS)]


async def test_a_reply_seen_earlier_places_its_reactions_without_asking_slack(
    ctx: ConnectorContext, identity: SlackIdentity, publisher: RecordingPublisher, events_contract: SlackEventsContract
) -> None:
    client = RepliesClient({})
    source = SlackEventsSource(make_config(), ctx, identity, threads=ThreadIndex(client))
    reply = user_message(ts=REPLY_TS, thread_ts=ROOT_TS, text="me too")
    await deliver_checked(source, events_contract, reply, event_id="Ev1")
    await deliver_checked(source, events_contract, reaction("reaction_added", REPLY_TS), event_id="Ev2")
    assert publisher.published[1].key == f"slack:{TEAM_ID}:{CHANNEL}:{ROOT_TS}"
    assert client.calls == []


async def test_a_thread_lookup_that_fails_takes_the_message_as_its_thread_root(
    ctx: ConnectorContext, identity: SlackIdentity, publisher: RecordingPublisher
) -> None:
    class Refusing:
        async def conversation_replies(self, channel: str, ts: str, *, limit: int = 200) -> dict[str, Any]:
            from connectors.errors import FatalError

            raise FatalError("slack conversations.replies: missing_scope")

    source = SlackEventsSource(make_config(), ctx, identity, threads=ThreadIndex(Refusing()))
    assert (await deliver(source, event_payload(reaction("reaction_added", REPLY_TS)))).status == 200
    assert publisher.published[0].key == f"slack:{TEAM_ID}:{CHANNEL}:{REPLY_TS}"


def test_the_thread_index_is_bounded() -> None:
    index = ThreadIndex(None, max_remembered=3)
    for n in range(10):
        index.remember(CHANNEL, f"{n}.0", "1.0")
    assert len(index) == 3


async def test_a_reaction_without_its_message_is_a_client_error(
    ctx: ConnectorContext, identity: SlackIdentity, publisher: RecordingPublisher
) -> None:
    broken = reaction("reaction_added", ROOT_TS)
    broken["item"] = {"type": "message", "channel": CHANNEL}
    with pytest.raises(SkippableError, match="item ts"):
        await deliver(make_source(ctx, identity), event_payload(broken))
    assert publisher.published == []


async def test_an_app_mention_is_a_posted_message_addressed_to_threadlink(
    ctx: ConnectorContext, identity: SlackIdentity, publisher: RecordingPublisher, events_contract: SlackEventsContract
) -> None:
    mention = {"type": "app_mention", "user": "U0001", "text": f"<@{BOT_USER_ID}> ticket", "channel": CHANNEL}
    await deliver_checked(make_source(ctx, identity), events_contract, {**mention, "ts": ROOT_TS})
    data = publisher.published[0].envelope.data
    assert isinstance(data, SocialMessage)
    assert (data.action, data.mentions_threadlink, data.text) == ("posted", True, f"<@{BOT_USER_ID}> ticket")


async def test_a_message_sent_both_as_message_and_app_mention_is_published_once(
    ctx: ConnectorContext, identity: SlackIdentity, publisher: RecordingPublisher, events_contract: SlackEventsContract
) -> None:
    source = make_source(ctx, identity)
    text = f"<@{BOT_USER_ID}> is PROJ-1 back?"
    first = await deliver_checked(source, events_contract, user_message(text=text), event_id="Ev1")
    mention = {"type": "app_mention", "user": "U0001", "text": text, "channel": CHANNEL, "ts": ROOT_TS}
    second = await deliver_checked(source, events_contract, mention, event_id="Ev2")
    assert (first.outcome, second.outcome) == ("accepted", "duplicate")
    [published] = publisher.published
    assert published.envelope.data.mentions_threadlink is True


async def test_a_file_share_carries_the_files_metadata_only(
    ctx: ConnectorContext, identity: SlackIdentity, publisher: RecordingPublisher, events_contract: SlackEventsContract
) -> None:
    files = [
        {
            "id": f"F{n}",
            "name": f"log-{n}.txt",
            "mimetype": "text/plain",
            "size": 1200 + n,
            "url_private": f"https://files.slack.com/files-pri/T0001-F{n}/log.txt",
        }
        for n in range(30)
    ]
    shared = user_message(subtype="file_share", text="the log", files=files)
    await deliver_checked(make_source(ctx, identity), events_contract, shared)
    data = publisher.published[0].envelope.data
    assert len(data.files) == 20  # the contract's bound: a message with more keeps the first
    assert data.files[3].model_dump() == {
        "id": "F3",
        "name": "log-3.txt",
        "mimetype": "text/plain",
        "size_bytes": 1203,
        "url": "https://files.slack.com/files-pri/T0001-F3/log.txt",
    }


@pytest.mark.parametrize(
    "kind, action, channel_type, visibility",
    [
        ("member_joined_channel", "joined", "C", "internal"),
        ("member_left_channel", "left", "G", "restricted"),
    ],
)
async def test_joins_and_leaves_are_memberships_keyed_by_channel(
    ctx: ConnectorContext,
    identity: SlackIdentity,
    publisher: RecordingPublisher,
    events_contract: SlackEventsContract,
    kind: str,
    action: str,
    channel_type: str,
    visibility: str,
) -> None:
    event = {"type": kind, "user": BOT_USER_ID, "channel": CHANNEL, "channel_type": channel_type, "team": TEAM_ID}
    await deliver_checked(make_source(ctx, identity), events_contract, event)
    [published] = publisher.published
    data = published.envelope.data
    assert isinstance(data, SocialMembership)
    assert (data.action, data.member.id, data.member.is_threadlink) == (action, BOT_USER_ID, True)
    assert published.key == f"slack:{TEAM_ID}:{CHANNEL}"
    assert data.channel_visibility == visibility


@pytest.mark.parametrize(
    "event, action, name, visibility",
    [
        (
            {"type": "channel_created", "channel": {"id": CHANNEL, "name": "support", "created": 1, "creator": "U1"}},
            "created",
            "support",
            "internal",
        ),
        (
            {"type": "channel_rename", "channel": {"id": CHANNEL, "name": "help", "created": 1}},
            "renamed",
            "help",
            "internal",
        ),
        ({"type": "channel_archive", "channel": CHANNEL, "user": "U1"}, "archived", None, "internal"),
        ({"type": "channel_unarchive", "channel": CHANNEL, "user": "U1"}, "unarchived", None, "internal"),
        (
            {"type": "group_rename", "channel": {"id": CHANNEL, "name": "ops", "created": 1}},
            "renamed",
            "ops",
            "restricted",
        ),
        ({"type": "group_archive", "channel": CHANNEL}, "archived", None, "restricted"),
    ],
    ids=["created", "rename", "archive", "unarchive", "group_rename", "group_archive"],
)
async def test_channel_changes_are_keyed_by_channel(
    ctx: ConnectorContext,
    identity: SlackIdentity,
    publisher: RecordingPublisher,
    events_contract: SlackEventsContract,
    event: dict[str, Any],
    action: str,
    name: str | None,
    visibility: str,
) -> None:
    await deliver_checked(make_source(ctx, identity), events_contract, event)
    [published] = publisher.published
    data = published.envelope.data
    assert isinstance(data, SocialChannelChange)
    assert (data.action, data.name, data.channel_visibility) == (action, name, visibility)
    assert published.key == data.channel.id == f"slack:{TEAM_ID}:{CHANNEL}"
    assert published.envelope.type == f"io.threadlink.social.channel.{action}"


@pytest.mark.parametrize(
    "event",
    [
        reaction("reaction_added", ROOT_TS),
        {"type": "member_joined_channel", "user": "U1", "channel": CHANNEL, "channel_type": "C"},
        {"type": "channel_rename", "channel": {"id": CHANNEL, "name": "help", "created": 1}},
        user_message(),
    ],
    ids=["reaction", "membership", "channel", "message"],
)
async def test_every_event_in_a_slack_connect_channel_is_public(
    ctx: ConnectorContext,
    identity: SlackIdentity,
    publisher: RecordingPublisher,
    events_contract: SlackEventsContract,
    event: dict[str, Any],
) -> None:
    body = {**event_payload(event), "is_ext_shared_channel": True}
    assert events_contract.check_event(body) == []
    await deliver(make_source(ctx, identity), body)
    envelope = publisher.published[0].envelope
    assert envelope.visibility == envelope.data.channel_visibility == "public"


def bot_message(bot_id: str, app_id: str, **fields: Any) -> dict[str, Any]:
    return user_message(subtype="bot_message", bot_id=bot_id, app_id=app_id, username="bridge", user=None, **fields)


@pytest.mark.parametrize(
    "ignore_bots, published_count",
    [([], 2), (["B0BRIDGE"], 1), (["A0BRIDGE"], 1), (["*"], 0)],
    ids=["none", "by_bot_id", "by_app_id", "every_bot"],
)
async def test_other_bots_can_be_ignored_so_two_bridges_never_loop(
    ctx: ConnectorContext,
    identity: SlackIdentity,
    publisher: RecordingPublisher,
    ignore_bots: list[str],
    published_count: int,
) -> None:
    source = make_source(ctx, identity, ignore_bots=ignore_bots)
    await deliver(source, event_payload(bot_message("B0BRIDGE", "A0BRIDGE"), event_id="Ev1"))
    await deliver(source, event_payload(bot_message("B0OTHER", "A0OTHER", ts=REPLY_TS), event_id="Ev2"))
    assert len(publisher.published) == published_count


async def test_an_ignored_bot_s_edit_is_ignored_too(
    ctx: ConnectorContext, identity: SlackIdentity, publisher: RecordingPublisher
) -> None:
    edit = user_message(
        subtype="message_changed",
        message={"type": "message", "bot_id": "B0BRIDGE", "text": "new", "ts": ROOT_TS},
        previous_message={"type": "message", "bot_id": "B0BRIDGE", "text": "old", "ts": ROOT_TS},
    )
    response = await deliver(make_source(ctx, identity, ignore_bots=["B0BRIDGE"]), event_payload(edit))
    assert (response.status, response.outcome, publisher.published) == (200, "ignored", [])


async def test_threadlink_s_own_messages_stay_marked_whatever_ignore_bots_says(
    ctx: ConnectorContext, identity: SlackIdentity, publisher: RecordingPublisher
) -> None:
    await deliver(make_source(ctx, identity, ignore_bots=["B0BRIDGE"]), event_payload(bot_message(BOT_ID, APP_ID)))
    assert publisher.published[0].envelope.data.author.is_threadlink is True


@pytest.mark.parametrize("value", ["U0001", "", "B 1", "X" * 40])
def test_ignore_bots_refuses_what_is_not_a_bot_id(value: str) -> None:
    with pytest.raises(ValidationError, match="ignore_bots"):
        make_config(ignore_bots=[value])
