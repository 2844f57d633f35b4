"""The Slack Events API webhook: signed requests in, social event envelopes out.

Verification is Slack's v0 scheme on the raw body (https://api.slack.com/authentication/verifying-requests-from-slack):
`X-Slack-Signature = "v0=" + hex(HMAC-SHA256(signing_secret, "v0:<timestamp>:<body>"))`, with
`X-Slack-Request-Timestamp` inside a replay window.

Slack redelivers an event up to three times when the answer is not a 2xx within 3 seconds
(`X-Slack-Retry-Num`, `X-Slack-Retry-Reason`); redeliveries share the `event_id`, which is
remembered once its envelope is on Kafka, so each is published once.

A message's permalink is built from the workspace URL, or asked of Slack where the config says so
(connectors/slack/permalinks.py), before it is published.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from connectors.base import ConnectorContext, Unauthorized, WebhookRequest, WebhookResponse, WebhookSource, header_value
from connectors.errors import SkippableError
from connectors.runtime.dedup import RecentIds
from connectors.runtime.payloads import parse_json_object
from connectors.runtime.recent import remember_published
from connectors.slack.client import SlackClient
from connectors.slack.config import SlackConfig
from connectors.slack.mapping import SlackEvent, SlackIdentity, envelope_for, from_ignored_bot, same_message_key
from connectors.slack.permalinks import Permalinks
from connectors.slack.threads import ThreadIndex
from schemas.envelope import Envelope
from schemas.social import SocialMessage, SocialReaction

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
SIGNATURE_HEADER = "X-Slack-Signature"
RETRY_NUM_HEADER = "X-Slack-Retry-Num"
RETRY_REASON_HEADER = "X-Slack-Retry-Reason"


def slack_signature(signing_secret: str | bytes, timestamp: str, body: bytes) -> str:
    """Slack's v0 request signature of `body` sent at `timestamp` (epoch seconds, as a string)."""
    secret = signing_secret.encode() if isinstance(signing_secret, str) else signing_secret
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret, base, hashlib.sha256).hexdigest()


def signed_headers(signing_secret: str | bytes, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The two headers Slack would send with `body` (tests and sandboxes sign requests with it)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: slack_signature(signing_secret, ts, body)}


def verify_signature(
    signing_secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    max_age_s: float,
    now: float | None = None,
) -> None:
    """Raise Unauthorized (with a reason that never holds the secret) unless `body` was signed
    by Slack within `max_age_s` of `now`."""
    timestamp = header_value(headers, TIMESTAMP_HEADER)
    signature = header_value(headers, SIGNATURE_HEADER)
    if not timestamp:
        raise Unauthorized(f"missing {TIMESTAMP_HEADER}")
    if not signature:
        raise Unauthorized(f"missing {SIGNATURE_HEADER}")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise Unauthorized(f"{TIMESTAMP_HEADER} is not a number") from None
    age = (time.time() if now is None else now) - sent_at
    if abs(age) > max_age_s:
        raise Unauthorized(f"{TIMESTAMP_HEADER} is {age:.0f}s away from now (window {max_age_s:.0f}s): a replay?")
    expected = slack_signature(signing_secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Unauthorized(f"{SIGNATURE_HEADER} does not match the body (wrong signing_secret?)")


def verify_request(config: SlackConfig, request: WebhookRequest, *, now: float | None = None) -> None:
    """`verify_signature` with the app's signing secret and replay window."""
    verify_signature(
        config.signing_secret.get_secret_value(),
        request.headers,
        request.body,
        max_age_s=config.signature_max_age_s,
        now=now,
    )


class SlackEventsSource(WebhookSource):
    """Served at `/webhooks/<connector name>/events`: the app's Event Subscriptions Request URL."""

    path = "/events"

    def __init__(
        self,
        config: SlackConfig,
        ctx: ConnectorContext,
        identity: SlackIdentity,
        *,
        client: SlackClient | None = None,
        recent: RecentIds | None = None,
        threads: ThreadIndex | None = None,
        permalinks: Permalinks | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._ctx = ctx
        self._identity = identity
        self._client = client
        self._recent = recent if recent is not None else RecentIds()
        self._threads = threads if threads is not None else ThreadIndex(client)
        self._permalinks = permalinks or Permalinks(client, config.permalinks, timeout_s=config.permalink_timeout_s)
        self._ignored_bots = set(config.ignore_bots)
        self._clock = clock
        # event_id -> the publish in progress: a redelivery that arrives meanwhile waits for it
        # instead of publishing a second copy.
        self._in_flight: dict[str, asyncio.Future[None]] = {}

    async def start(self) -> None:
        """Learn threadlink's own ids (auth.test) before the first event, so its own messages
        are marked `is_threadlink` even when this process runs no sink; and remember the events
        published lately, by this replica before a restart or by another."""
        if self._client is not None:
            await self._identity.resolve(self._client)
        await remember_published(self._ctx, self._recent, self._config.redelivery_window_s)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def verify(self, request: WebhookRequest) -> None:
        verify_request(self._config, request, now=self._clock())

    async def handle(self, request: WebhookRequest) -> WebhookResponse:
        payload = parse_json_object(request.body, what="slack events body")
        kind = payload.get("type")
        if kind == "url_verification":
            challenge = payload.get("challenge")
            if not isinstance(challenge, str):
                raise SkippableError("slack url_verification without a challenge")
            return WebhookResponse(json={"challenge": challenge}, outcome="ignored")
        if kind == "app_rate_limited":
            # Slack tells us it is dropping our events for a minute; nothing to publish.
            log.warning("slack says events for app %s are being rate limited", payload.get("api_app_id"))
            return WebhookResponse(outcome="ignored")
        if kind != "event_callback":
            # Acknowledged, not refused: Slack retries non-2xx answers and turns off the
            # subscriptions of apps that fail too often. A type we do not know is not an error.
            log.info("slack events: ignoring envelope type %r", str(kind)[:40])
            return WebhookResponse(outcome="ignored")

        event_id = payload.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            raise SkippableError("slack event_callback without event_id")
        retry = header_value(request.headers, RETRY_NUM_HEADER)
        if self._recent.seen(event_id):
            log.debug("slack event %s redelivered (retry %s): already published", event_id, retry)
            return WebhookResponse(outcome="duplicate")
        pending = self._in_flight.get(event_id)
        if pending is not None:
            # Raises if that publish fails: then this answer is a 503 too, and Slack retries.
            await asyncio.shield(pending)
            return WebhookResponse(outcome="duplicate")

        event = payload.get("event")
        if isinstance(event, dict) and from_ignored_bot(event, self._ignored_bots):
            return WebhookResponse(outcome="ignored")
        envelope = envelope_for(payload, platform=self._ctx.name, identity=self._identity)
        if envelope is None:
            return WebhookResponse(outcome="ignored")  # acknowledged, nothing threadlink acts on
        envelope = await self._placed_in_thread(envelope)
        same_message = same_message_key(envelope.data)
        if same_message is not None and self._recent.seen(same_message):
            self._recent.remember(event_id)
            return WebhookResponse(outcome="duplicate")
        envelope = await self._with_slacks_permalink(envelope, payload)
        publish = asyncio.ensure_future(self._publish(event_id, envelope, same_message))
        self._in_flight[event_id] = publish
        try:
            # Shielded: a client that hangs up does not cancel a publish half-way.
            await asyncio.shield(publish)
        finally:
            if publish.done():
                self._in_flight.pop(event_id, None)
            else:  # this request was cancelled; the publish goes on without it
                publish.add_done_callback(lambda done: self._forget(event_id, done))
        return WebhookResponse()

    async def _placed_in_thread(self, envelope: Envelope[SlackEvent]) -> Envelope[SlackEvent]:
        """Messages teach the index their thread; a reaction is moved into its message's thread."""
        data = envelope.data
        if isinstance(data, SocialMessage):
            self._threads.remember(data.thread.channel, data.message_id, data.thread.thread_id)
            return envelope
        if not isinstance(data, SocialReaction):
            return envelope
        thread_ts = await self._threads.thread_of(data.thread.channel, data.message_id)
        if thread_ts == data.thread.thread_id:
            return envelope
        thread = data.thread.model_copy(update={"thread_id": thread_ts})
        return envelope.model_copy(update={"data": data.model_copy(update={"thread": thread}), "subject": thread.id})

    async def _with_slacks_permalink(
        self, envelope: Envelope[SlackEvent], payload: dict[str, Any]
    ) -> Envelope[SlackEvent]:
        data = envelope.data
        if not isinstance(data, SocialMessage) or data.action == "deleted" or not self._permalinks.wanted(payload):
            return envelope
        link = await self._permalinks.link(data.thread.channel, data.message_id, data.permalink)
        if link == data.permalink:
            return envelope
        return envelope.model_copy(update={"data": data.model_copy(update={"permalink": link})})

    def _forget(self, event_id: str, publish: asyncio.Future[None]) -> None:
        self._in_flight.pop(event_id, None)
        if not publish.cancelled() and publish.exception() is not None:
            log.warning("slack event %s: publish failed after its request went away: %r", event_id, publish.exception())

    async def _publish(self, event_id: str, envelope: Envelope[SlackEvent], same_message: str | None) -> None:
        assert envelope.subject is not None  # envelope_for gives every event its key
        await self._ctx.publisher.publish(self._ctx.topics.social_events, envelope.subject, envelope)
        # Only now: an event whose publish failed is answered 503 and published on Slack's retry.
        self._recent.remember(event_id)
        if same_message is not None:
            self._recent.remember(same_message)
