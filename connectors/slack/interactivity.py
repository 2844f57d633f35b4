"""Slack's interactivity endpoint: a card's buttons, pressed, become SocialAction events.

Slack posts `payload=<JSON>` form-encoded, signed like the Events API
(https://api.slack.com/interactivity/handling), and wants an empty 200 within 3 seconds; it
does not redeliver (the person sees an error and presses again). A press's envelope id is made
of the message, the control and Slack's `action_ts`, so the same press published twice is
recognisable downstream, while a second press is a new event.

Only `block_actions` on threadlink's own controls (`action_id` starting `threadlink.`) are
published: the flows act on those (connectors/slack/cards.py puts them on cards).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

from connectors.base import ConnectorContext, WebhookRequest, WebhookResponse, WebhookSource
from connectors.errors import SkippableError
from connectors.runtime.payloads import epoch_time, parse_json_object
from connectors.slack.config import SlackConfig
from connectors.slack.mapping import SlackIdentity
from connectors.slack.source import verify_request
from schemas import events
from schemas.envelope import Envelope
from schemas.social import Author, SocialAction, ThreadRef

log = logging.getLogger(__name__)

#: What threadlink's own controls' action ids start with.
ACTION_PREFIX = "threadlink."
#: Slack sends one action per press; anything beyond a few is not Slack.
MAX_ACTIONS = 5
MAX_VALUE = 2000


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def interaction_payload(body: bytes) -> dict[str, Any]:
    """The JSON in the form's `payload` field; SkippableError (a 400) for anything else."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SkippableError(f"slack interactivity body is not a form: {str(exc)[:100]}") from None
    values = form.get("payload")
    if not values or len(values) != 1:
        raise SkippableError("slack interactivity body without exactly one `payload` field")
    return parse_json_object(values[0].encode(), what="slack interactivity payload")


def action_envelopes(
    payload: dict[str, Any], *, platform: str, identity: SlackIdentity
) -> list[Envelope[SocialAction]]:
    """One envelope per threadlink control pressed in a `block_actions` payload."""
    if payload.get("type") != "block_actions":
        return []
    team_id = _str(_dict(payload.get("team")).get("id")) or identity.team_id
    container, message = _dict(payload.get("container")), _dict(payload.get("message"))
    channel = _str(container.get("channel_id")) or _str(_dict(payload.get("channel")).get("id"))
    message_ts = _str(container.get("message_ts")) or _str(message.get("ts"))
    user = _dict(payload.get("user"))
    user_id = _str(user.get("id"))
    actions = payload.get("actions")
    if team_id is None or channel is None or message_ts is None or user_id is None or not isinstance(actions, list):
        raise SkippableError("slack block_actions without team, channel, message ts, user or actions")
    epoch_time(message_ts, what="slack block_actions message ts")
    thread = ThreadRef(
        platform=platform,
        workspace=team_id,
        channel=channel,
        thread_id=_str(container.get("thread_ts")) or _str(message.get("thread_ts")) or message_ts,
    )
    author = Author(
        id=user_id,
        display_name=_str(user.get("name")) or _str(user.get("username")),
        is_threadlink=identity.is_self(user=user_id, bot_id=None, app_id=None),
    )
    envelopes = []
    for action in actions[:MAX_ACTIONS]:
        action = _dict(action)
        action_id = _str(action.get("action_id"))
        if action_id is None or not action_id.startswith(ACTION_PREFIX):
            continue
        value = _str(action.get("value")) or _str(_dict(action.get("selected_option")).get("value"))
        action_ts = _str(action.get("action_ts")) or message_ts
        pressed = SocialAction(
            thread=thread,
            message_id=message_ts,
            action_id=action_id[:255],
            value=value[:MAX_VALUE] if value else None,
            author=author,
        )
        envelopes.append(
            Envelope.wrap(
                pressed,
                type=events.SOCIAL_ACTION,
                source_system=platform,
                subject=thread.id,
                id=f"{platform}:action:{channel}:{message_ts}:{action_id[:255]}:{action_ts}",
                occurred_at=epoch_time(action_ts, what="slack action_ts"),
                visibility=pressed.channel_visibility,
            )
        )
    return envelopes


class SlackInteractivitySource(WebhookSource):
    """Served at `/webhooks/<connector name>/interactivity`: the app's Interactivity Request URL."""

    path = "/interactivity"

    def __init__(self, config: SlackConfig, ctx: ConnectorContext, identity: SlackIdentity) -> None:
        self._config = config
        self._ctx = ctx
        self._identity = identity

    def verify(self, request: WebhookRequest) -> None:
        verify_request(self._config, request)

    async def handle(self, request: WebhookRequest) -> WebhookResponse:
        payload = interaction_payload(request.body)
        envelopes = action_envelopes(payload, platform=self._ctx.name, identity=self._identity)
        if not envelopes:
            log.debug("slack interactivity: nothing for threadlink in a %r payload", str(payload.get("type"))[:40])
            return WebhookResponse(text="", outcome="ignored")
        for envelope in envelopes:
            assert envelope.subject is not None
            await self._ctx.publisher.publish(self._ctx.topics.social_events, envelope.subject, envelope)
        return WebhookResponse(text="")
