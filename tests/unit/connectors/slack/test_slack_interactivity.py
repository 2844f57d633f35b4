"""The interactivity endpoint: a card's button pressed on Slack becomes a SocialAction."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from connectors.base import ConnectorContext, Unauthorized, WebhookRequest
from connectors.errors import SkippableError
from connectors.runtime.payloads import InvalidPayload
from connectors.slack.cards import FOLLOW_ACTION
from connectors.slack.interactivity import MAX_ACTIONS, SlackInteractivitySource
from connectors.slack.mapping import SlackIdentity
from connectors.slack.source import signed_headers
from schemas.social import SocialAction

from .conftest import BOT_USER_ID, CHANNEL, SIGNING_SECRET, TEAM_ID, RecordingPublisher, make_config

pytestmark = pytest.mark.unit

CARD_TS = "1700000002.000300"
ROOT_TS = "1700000000.000100"


def block_actions(*actions: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A block_actions payload as Slack sends it for a button on a message in a thread."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "team": {"id": TEAM_ID, "domain": "acme"},
        "user": {"id": "U0001", "username": "ada", "name": "ada", "team_id": TEAM_ID},
        "api_app_id": "A0THREADLNK",
        "token": "verification-token",
        "container": {
            "type": "message",
            "message_ts": CARD_TS,
            "channel_id": CHANNEL,
            "is_ephemeral": False,
            "thread_ts": ROOT_TS,
        },
        "trigger_id": "123.456.abc",
        "channel": {"id": CHANNEL, "name": "support"},
        "message": {"type": "message", "ts": CARD_TS, "thread_ts": ROOT_TS, "bot_id": "B0THREADLNK", "text": "card"},
        "response_url": "https://hooks.slack.com/actions/T0001/1/abc",
        "actions": list(actions),
    }
    payload.update(overrides)
    return payload


def button(action_id: str = FOLLOW_ACTION, value: str = "jira:PROJ-1", ts: str = "1700000005.000001") -> dict[str, Any]:
    return {
        "action_id": action_id,
        "block_id": "b1",
        "text": {"type": "plain_text", "text": "Follow"},
        "value": value,
        "type": "button",
        "action_ts": ts,
    }


def form(payload: dict[str, Any] | str) -> bytes:
    return urlencode({"payload": payload if isinstance(payload, str) else json.dumps(payload)}).encode()


def signed(body: bytes, secret: str = SIGNING_SECRET) -> WebhookRequest:
    headers = {**signed_headers(secret, body), "Content-Type": "application/x-www-form-urlencoded"}
    return WebhookRequest(headers=headers, body=body)


@pytest.fixture
def source(ctx: ConnectorContext) -> SlackInteractivitySource:
    return SlackInteractivitySource(make_config(), ctx, SlackIdentity(bot_user_id=BOT_USER_ID))


async def press(source: SlackInteractivitySource, body: bytes) -> Any:
    request = signed(body)
    source.verify(request)
    return await source.handle(request)


async def test_a_follow_press_is_a_social_action_in_the_card_s_thread(
    source: SlackInteractivitySource, publisher: RecordingPublisher
) -> None:
    response = await press(source, form(block_actions(button())))
    assert (response.status, response.text, response.outcome) == (200, "", "accepted")
    [published] = publisher.published
    action = published.envelope.data
    assert isinstance(action, SocialAction)
    assert (action.action_id, action.value, action.message_id, action.author.id) == (
        FOLLOW_ACTION,
        "jira:PROJ-1",
        CARD_TS,
        "U0001",
    )
    assert published.topic == "test.social.events"
    assert published.key == action.thread.id == f"slack:{TEAM_ID}:{CHANNEL}:{ROOT_TS}"
    assert published.envelope.type == "io.threadlink.social.action.pressed"


async def test_two_presses_are_two_events_and_the_same_press_has_one_id(
    source: SlackInteractivitySource, publisher: RecordingPublisher
) -> None:
    await press(source, form(block_actions(button(ts="1700000005.000001"))))
    await press(source, form(block_actions(button(ts="1700000005.000001"))))
    await press(source, form(block_actions(button(ts="1700000009.000001"))))
    ids = [p.envelope.id for p in publisher.published]
    assert ids[0] == ids[1] != ids[2]


async def test_controls_that_are_not_threadlink_s_and_other_payload_types_are_acknowledged_only(
    source: SlackInteractivitySource, publisher: RecordingPublisher
) -> None:
    assert (await press(source, form(block_actions(button(action_id="other.app"))))).outcome == "ignored"
    assert (await press(source, form({"type": "view_submission", "view": {}}))).outcome == "ignored"
    assert publisher.published == []


async def test_the_actions_of_one_payload_are_bounded(
    source: SlackInteractivitySource, publisher: RecordingPublisher
) -> None:
    many = [button(ts=f"1700000005.{n:06d}") for n in range(50)]
    await press(source, form(block_actions(*many)))
    assert len(publisher.published) == MAX_ACTIONS


def test_a_press_signed_with_another_secret_is_unauthorized(source: SlackInteractivitySource) -> None:
    with pytest.raises(Unauthorized):
        source.verify(signed(form(block_actions(button())), secret="not-the-secret"))


@pytest.mark.parametrize(
    "body",
    [
        b"not a form at all",
        b"payload=1&payload=2",
        b"other=1",
        b"\xff\xfe",
        form("{not json"),
        form("[" * 100_000 + "]" * 100_000),
        form('"\\ud800"'),
        form(block_actions(button(), container={}, message={})),
        form(block_actions(button(), container={"channel_id": CHANNEL, "message_ts": "1e300"})),
    ],
    ids=[
        "not_a_form",
        "two_payloads",
        "no_payload",
        "not_utf8",
        "bad_json",
        "deep_json",
        "lone_surrogate",
        "no_message",
        "absurd_ts",
    ],
)
async def test_hostile_bodies_are_client_errors_and_publish_nothing(
    source: SlackInteractivitySource, publisher: RecordingPublisher, body: bytes
) -> None:
    with pytest.raises((SkippableError, InvalidPayload)):
        await press(source, body)
    assert publisher.published == []
