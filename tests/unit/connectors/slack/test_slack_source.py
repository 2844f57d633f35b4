from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.base import ConnectorContext
from connectors.errors import SkippableError
from connectors.runtime.kafka import PublishError
from connectors.slack.mapping import SlackIdentity
from connectors.slack.source import SlackEventsSource
from schemas.social import SocialMessage

from .conftest import (
    APP_ID,
    BOT_ID,
    BOT_USER_ID,
    CHANNEL,
    TEAM_ID,
    RecordingPublisher,
    event_payload,
    make_config,
    signed_request,
)

pytestmark = pytest.mark.unit

ROOT_TS = "1700000000.000100"
REPLY_TS = "1700000001.000200"


@pytest.fixture
def identity() -> SlackIdentity:
    return SlackIdentity(bot_user_id=BOT_USER_ID, bot_id=BOT_ID, app_id=APP_ID, workspace_url="https://acme.slack.com/")


@pytest.fixture
def source(ctx: ConnectorContext, identity: SlackIdentity) -> SlackEventsSource:
    return SlackEventsSource(make_config(), ctx, identity)


def user_message(**fields: Any) -> dict[str, Any]:
    return {
        "type": "message",
        "channel": CHANNEL,
        "channel_type": "channel",
        "user": "U0001",
        "text": "Is PROJ-1 back?",
        "ts": ROOT_TS,
        **fields,
    }


async def deliver(source: SlackEventsSource, payload: dict[str, Any] | bytes, **headers: str) -> Any:
    request = signed_request(payload, headers=headers)
    source.verify(request)
    return await source.handle(request)


async def test_url_verification_echoes_the_challenge(source: SlackEventsSource, publisher: RecordingPublisher) -> None:
    response = await deliver(source, {"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV", "type": "url_verification"})
    assert (response.status, response.json) == (200, {"challenge": "3eZbrw1aBm2rZgRNFdxV"})
    assert publisher.published == []


async def test_plain_message_is_published_as_posted(
    source: SlackEventsSource, publisher: RecordingPublisher, ctx: ConnectorContext
) -> None:
    response = await deliver(source, event_payload(user_message(), event_id="Ev42", event_time=1_700_000_005))
    assert response.status == 200
    (published,) = publisher.published
    envelope = published.envelope
    message: SocialMessage = envelope.data
    assert published.topic == ctx.topics.social_events == "test.social.events"
    assert published.key == message.thread.id == f"slack:{TEAM_ID}:{CHANNEL}:{ROOT_TS}"
    assert envelope.id == "slack:Ev42"
    assert envelope.type == "io.threadlink.social.message.posted"
    assert envelope.subject == message.thread.id
    assert envelope.source_system == "slack"
    assert envelope.occurred_at == datetime.fromtimestamp(1_700_000_005, UTC)
    assert envelope.visibility == "internal"  # a public channel: the whole workspace reads it
    assert message.model_dump() == {
        "kind": "message",
        "thread": {
            "kind": "thread",
            "platform": "slack",
            "workspace": TEAM_ID,
            "channel": CHANNEL,
            "thread_id": ROOT_TS,
        },
        "message_id": ROOT_TS,
        "action": "posted",
        "author": {"id": "U0001", "display_name": None, "is_bot": False, "is_threadlink": False},
        "text": "Is PROJ-1 back?",
        "previous_text": None,
        "permalink": "https://acme.slack.com/archives/C0GENERAL1/p1700000000000100",
        "channel_visibility": "internal",
        "mentions_threadlink": False,
        "files": [],
    }


async def test_thread_reply_belongs_to_the_root_thread(
    source: SlackEventsSource, publisher: RecordingPublisher
) -> None:
    await deliver(source, event_payload(user_message(ts=REPLY_TS, thread_ts=ROOT_TS, parent_user_id="U0002")))
    message = publisher.published[0].envelope.data
    assert (message.thread.thread_id, message.message_id) == (ROOT_TS, REPLY_TS)


async def test_edit_carries_the_new_text(source: SlackEventsSource, publisher: RecordingPublisher) -> None:
    event = {
        "type": "message",
        "subtype": "message_changed",
        "hidden": True,
        "channel": CHANNEL,
        "channel_type": "group",
        "ts": "1700000009.000900",
        "message": {
            "type": "message",
            "user": "U0001",
            "text": "Is PROJ-2 back?",
            "ts": REPLY_TS,
            "thread_ts": ROOT_TS,
        },
        "previous_message": {"type": "message", "user": "U0001", "text": "Is PROJ-1 back?", "ts": REPLY_TS},
    }
    await deliver(source, event_payload(event))
    envelope = publisher.published[0].envelope
    assert envelope.type == "io.threadlink.social.message.edited"
    assert envelope.visibility == "restricted"
    message = envelope.data
    assert (message.action, message.text, message.message_id) == ("edited", "Is PROJ-2 back?", REPLY_TS)
    assert message.thread.thread_id == ROOT_TS


async def test_an_edit_that_did_not_change_the_text_is_ignored(
    source: SlackEventsSource, publisher: RecordingPublisher
) -> None:
    same = {"type": "message", "user": "U0001", "text": "see https://x", "ts": REPLY_TS}
    event = {
        "type": "message",
        "subtype": "message_changed",
        "channel": CHANNEL,
        "message": same,
        "previous_message": same,
    }
    assert (await deliver(source, event_payload(event))).status == 200
    assert publisher.published == []


async def test_delete_names_the_deleted_message(source: SlackEventsSource, publisher: RecordingPublisher) -> None:
    event = {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "channel": CHANNEL,
        "channel_type": "channel",
        "ts": "1700000009.000900",
        "deleted_ts": REPLY_TS,
        "previous_message": {"type": "message", "user": "U0001", "text": "old", "ts": REPLY_TS, "thread_ts": ROOT_TS},
    }
    await deliver(source, event_payload(event))
    envelope = publisher.published[0].envelope
    assert envelope.type == "io.threadlink.social.message.deleted"
    message = envelope.data
    assert (message.action, message.message_id, message.text, message.author.id) == ("deleted", REPLY_TS, "", "U0001")
    assert message.thread.thread_id == ROOT_TS


@pytest.mark.parametrize(
    "fields",
    [
        {"user": BOT_USER_ID, "bot_id": BOT_ID, "app_id": APP_ID},
        {"bot_id": BOT_ID, "subtype": "bot_message", "username": "threadlink"},
        {"bot_id": "B0SOMEONEELSE", "app_id": APP_ID},
        {"user": BOT_USER_ID},
    ],
    ids=["bot-token-post", "legacy-bot-message", "same-app", "bot-user"],
)
async def test_threadlinks_own_messages_are_marked(
    source: SlackEventsSource, publisher: RecordingPublisher, fields: dict[str, Any]
) -> None:
    event = user_message(**fields)
    if "user" not in fields:
        del event["user"]
    await deliver(source, event_payload(event))
    author = publisher.published[0].envelope.data.author
    assert author.is_threadlink
    assert author.is_bot == ("bot_id" in fields)


async def test_other_bots_are_bots_but_not_threadlink(source: SlackEventsSource, publisher: RecordingPublisher) -> None:
    event = user_message(subtype="bot_message", bot_id="B0OTHERBOT1", username="deploybot")
    del event["user"]
    await deliver(source, event_payload(event))
    author = publisher.published[0].envelope.data.author
    assert author.model_dump() == {
        "id": "B0OTHERBOT1",
        "display_name": "deploybot",
        "is_bot": True,
        "is_threadlink": False,
    }


@pytest.mark.parametrize(
    ("channel_type", "visibility"),
    [
        ("channel", "internal"),
        ("group", "restricted"),
        ("im", "restricted"),
        ("mpim", "restricted"),
        ("app_home", "internal"),
    ],
)
async def test_channel_type_sets_visibility(
    source: SlackEventsSource, publisher: RecordingPublisher, channel_type: str, visibility: str
) -> None:
    await deliver(source, event_payload(user_message(channel_type=channel_type)))
    envelope = publisher.published[0].envelope
    assert envelope.visibility == envelope.data.channel_visibility == visibility


@pytest.mark.parametrize(
    "event",
    [
        user_message(subtype="channel_join", text="<@U0001> has joined the channel"),
        user_message(subtype="channel_topic"),
        {"type": "reaction_added", "user": "U0001", "reaction": "eyes", "item": {"type": "file", "file": "F1"}},
        {"type": "pin_added", "user": "U0001", "channel_id": CHANNEL, "item": {"type": "message"}},
    ],
    ids=["channel_join", "channel_topic", "reaction_on_a_file", "pin_added"],
)
async def test_other_events_are_acknowledged_and_ignored(
    source: SlackEventsSource, publisher: RecordingPublisher, event: dict[str, Any]
) -> None:
    assert (await deliver(source, event_payload(event))).status == 200
    assert publisher.published == []


async def test_app_rate_limited_is_acknowledged(source: SlackEventsSource, publisher: RecordingPublisher) -> None:
    payload = {"token": "t", "team_id": TEAM_ID, "minute_rate_limited": 1518467820, "api_app_id": APP_ID}
    assert (await deliver(source, {**payload, "type": "app_rate_limited"})).status == 200
    assert publisher.published == []


async def test_a_redelivered_event_is_published_once(source: SlackEventsSource, publisher: RecordingPublisher) -> None:
    payload = event_payload(user_message(), event_id="Ev7")
    await deliver(source, payload)
    for retry in ("1", "2", "3"):
        response = await deliver(
            source, payload, **{"X-Slack-Retry-Num": retry, "X-Slack-Retry-Reason": "http_timeout"}
        )
        assert response.status == 200
    assert len(publisher.published) == 1
    await deliver(source, event_payload(user_message(ts=REPLY_TS), event_id="Ev8"))
    assert len(publisher.published) == 2


async def test_a_failed_publish_is_not_remembered_so_the_retry_publishes(
    source: SlackEventsSource, publisher: RecordingPublisher
) -> None:
    payload = event_payload(user_message(), event_id="Ev9")
    publisher.fail_times = 1
    with pytest.raises(PublishError):  # the runtime answers 503: Slack retries
        await deliver(source, payload)
    assert publisher.published == []
    await deliver(source, payload, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_error"})
    assert len(publisher.published) == 1
    assert publisher.published[0].envelope.id == "slack:Ev9"


async def test_a_redelivery_during_the_first_publish_waits_for_it(
    ctx: ConnectorContext, identity: SlackIdentity
) -> None:
    release = asyncio.Event()

    class SlowPublisher(RecordingPublisher):
        async def publish(self, topic: str, key: str, envelope: Any) -> None:
            await release.wait()
            await super().publish(topic, key, envelope)

    publisher = SlowPublisher()
    source = SlackEventsSource(make_config(), ConnectorContext(ctx.name, ctx.topics, publisher), identity)
    payload = event_payload(user_message(), event_id="Ev10")
    first = asyncio.create_task(deliver(source, payload))
    await asyncio.sleep(0)
    retry = asyncio.create_task(deliver(source, payload, **{"X-Slack-Retry-Num": "1"}))
    await asyncio.sleep(0)
    assert not first.done() and not retry.done()
    release.set()
    assert [r.status for r in await asyncio.gather(first, retry)] == [200, 200]
    assert len(publisher.published) == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"type": "event_callback", "event": {"type": "message"}}).encode(), "without event_id"),
        (json.dumps({"type": "event_callback", "event_id": "Ev1", "team_id": TEAM_ID}).encode(), "without event"),
        (json.dumps(event_payload({"type": "message", "text": "no channel, no ts"})).encode(), "without channel or ts"),
        (json.dumps({"type": "url_verification"}).encode(), "without a challenge"),
    ],
)
async def test_payloads_that_cannot_be_understood_are_skippable(
    source: SlackEventsSource, publisher: RecordingPublisher, body: bytes, reason: str
) -> None:
    with pytest.raises(SkippableError, match=reason):
        await deliver(source, body)
    assert publisher.published == []


async def test_unknown_envelope_types_are_acknowledged_not_refused(
    source: SlackEventsSource, publisher: RecordingPublisher
) -> None:
    response = await deliver(source, json.dumps({"type": "block_actions"}).encode())
    assert response.status == 200
    assert publisher.published == []


def test_permalinks_follow_slacks_format() -> None:
    identity = SlackIdentity(workspace_url="https://acme.slack.com/")
    root = identity.permalink("C0123456789", "1700000000.000100", "1700000000.000100")
    reply = identity.permalink("C0123456789", "1700000001.000200", "1700000000.000100")
    assert root == "https://acme.slack.com/archives/C0123456789/p1700000000000100"
    assert reply == (
        "https://acme.slack.com/archives/C0123456789/p1700000001000200?thread_ts=1700000000.000100&cid=C0123456789"
    )
    assert SlackIdentity().permalink("C0123456789", "1.2", "1.2") is None


@pytest.mark.parametrize("channel_type", ["channel", "group"])
async def test_a_channel_shared_with_another_organisation_is_the_most_public_place(
    source: SlackEventsSource, publisher: RecordingPublisher, channel_type: str
) -> None:
    payload = event_payload(user_message(channel_type=channel_type)) | {"is_ext_shared_channel": True}
    await deliver(source, payload)
    assert publisher.published[0].envelope.data.channel_visibility == "public"


async def test_an_edit_carries_the_earlier_text(source: SlackEventsSource, publisher: RecordingPublisher) -> None:
    edited = {
        "type": "message",
        "subtype": "message_changed",
        "channel": CHANNEL,
        "channel_type": "channel",
        "ts": "1700000001.000200",
        "message": {"type": "message", "user": "U0001", "text": "now OPS-2", "ts": ROOT_TS},
        "previous_message": {"type": "message", "user": "U0001", "text": "was PROJ-1", "ts": ROOT_TS},
    }
    await deliver(source, event_payload(edited))
    message = publisher.published[0].envelope.data
    assert (message.action, message.text, message.previous_text) == ("edited", "now OPS-2", "was PROJ-1")
