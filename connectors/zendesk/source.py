"""Zendesk in: signed ticket-event webhooks, and the cursor-based incremental ticket export.

Webhooks (https://developer.zendesk.com/api-reference/webhooks/event-types/ticket-events/): a
webhook subscribed to ticket events POSTs `{"type": "zen:event-type:ticket.<what>", "id": <uuid>,
"time", "subject": "zen:ticket:<id>", "detail": <the ticket>, "event": {...}}`, signed as in
signatures.py. Every ticket event becomes the ticket's record; `ticket.comment_added` also becomes
a RecordComment (an internal note `public: false`); a deleted or spam ticket becomes RecordMissing.
The event's `id` is the delivery id: Zendesk retries a delivery that failed with the same one, so
each is published once per process (and read back from Kafka at start, for a restarted replica).
Events that are not about tickets are acknowledged and ignored.

Polling (https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/#incremental-ticket-export-cursor-based):
`GET /api/v2/incremental/tickets/cursor.json?start_time=<epoch>` once, then `?cursor=<after_cursor>`
for ever: the cursor is Zendesk's own, checkpointed with the events of the page it leads past, so
a restart resumes after the last page published, with no gap and no duplicate. `end_of_stream`
says whether more pages wait now. Zendesk excludes the last minute, so the first start_time is a
minute ago.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.base import (
    ConnectorContext,
    Cursor,
    PollingSource,
    PollResult,
    Unauthorized,
    WebhookRequest,
    WebhookResponse,
    WebhookSource,
    header_value,
)
from connectors.errors import ConnectorError, SkippableError
from connectors.runtime.dedup import InFlight, RecentIds
from connectors.runtime.payloads import parse_json_object
from connectors.runtime.recent import remember_published
from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.config import ZendeskConfig
from connectors.zendesk.mapping import comment_record, parse_zendesk_time, ticket_key, ticket_record, zendesk_id
from connectors.zendesk.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_problem
from schemas import events
from schemas.envelope import Envelope
from schemas.records import RecordComment, RecordEvent, RecordMissing, RecordRef, TicketRecord, version_of
from schemas.visibility import Visibility

log = logging.getLogger(__name__)

EVENT_PREFIX = "zen:event-type:"
TICKET_EVENTS = EVENT_PREFIX + "ticket."
COMMENT_ADDED = TICKET_EVENTS + "comment_added"
#: Ticket events after which the ticket is no longer there to be shown.
GONE = {
    TICKET_EVENTS + "soft_deleted": "deleted",
    TICKET_EVENTS + "permanently_deleted": "deleted",
    TICKET_EVENTS + "marked_as_spam": "spam",
}

Published = tuple[str, str, Envelope[Any]]


class OwnUser:
    """threadlink's own Zendesk user id, learned once (`GET /api/v2/users/me.json`): its comments
    are `by_threadlink` and never mirrored back. Unknown when Zendesk does not answer at start."""

    def __init__(self) -> None:
        self.id: str | None = None

    async def learn(self, client: ZendeskClient, connector: str) -> None:
        try:
            self.id = zendesk_id((await client.me()).get("id"))
        except ConnectorError as exc:
            log.warning("%s: cannot learn threadlink's own Zendesk user (%s)", connector, exc)


def _envelope(ctx: ConnectorContext, data: Any, type: str, event_id: str, at: datetime | None) -> Published:
    model = RecordComment if isinstance(data, RecordComment) else RecordEvent
    topic = ctx.topics.record_comments if isinstance(data, RecordComment) else ctx.topics.records
    visibility: Visibility = getattr(data, "visibility", "restricted")
    envelope = Envelope[model].wrap(  # type: ignore[valid-type]
        data,
        type=type,
        source_system=ctx.name,
        subject=data.ref.id,
        id=f"{ctx.name}:{event_id}",
        occurred_at=at,
        visibility=visibility,
    )
    return topic, data.ref.id, envelope


def _record_event(ctx: ConnectorContext, record: TicketRecord, event_id: str) -> Published:
    return _envelope(ctx, record, events.RECORD_UPSERTED.format(kind=record.kind), event_id, record.updated_at)


def _missing_event(ctx: ConnectorContext, key: str, reason: str, event_id: str, at: datetime | None) -> Published:
    """Newer than the ticket's last state by one millisecond: the same event decides the same."""
    missing = RecordMissing(ref=RecordRef(system=ctx.name, key=key), reason=reason, version=version_of(at) + 1)
    return _envelope(ctx, missing, events.RECORD_MISSING, event_id, at)


class ZendeskWebhookSource(WebhookSource):
    """Served at `/webhooks/<connector name>`: the endpoint URL of a Zendesk webhook (request
    format JSON, method POST) subscribed to ticket events."""

    path = ""

    def __init__(
        self,
        config: ZendeskConfig,
        ctx: ConnectorContext,
        *,
        client: ZendeskClient | None = None,
        recent: RecentIds | None = None,
        now: Any = time.time,
    ) -> None:
        self.config = config
        self.ctx = ctx
        self._client = client
        self._now = now
        self._recent = recent if recent is not None else RecentIds()
        self._in_flight = InFlight()  # a redelivery while its first delivery publishes waits for it
        self.own_user = OwnUser()

    async def start(self) -> None:
        client = self._client or ZendeskClient(self.config)
        try:
            await self.own_user.learn(client, self.ctx.name)
        finally:
            if self._client is None:
                await client.aclose()
        await remember_published(
            self.ctx,
            self._recent,
            self.config.redelivery_window_s,
            topics=(self.ctx.topics.records, self.ctx.topics.record_comments),
            delivery_of=lambda event_id: event_id.removesuffix(":comment"),
        )

    def verify(self, request: WebhookRequest) -> None:
        problem = signature_problem(
            self.config.webhook_secret.get_secret_value(),
            request.body,
            header_value(request.headers, SIGNATURE_HEADER),
            header_value(request.headers, TIMESTAMP_HEADER),
            tolerance_s=self.config.webhook_tolerance_s,
            now=self._now,
        )
        if problem:
            raise Unauthorized(problem)

    async def handle(self, request: WebhookRequest) -> WebhookResponse:
        payload = parse_json_object(request.body, what="zendesk webhook body")
        kind = payload.get("type")
        if not isinstance(kind, str) or not kind.startswith(EVENT_PREFIX):
            raise SkippableError("zendesk webhook without a zen:event-type type (is the webhook subscribed to events?)")
        if not kind.startswith(TICKET_EVENTS):
            return WebhookResponse(json={"ignored": kind[:80]}, outcome="ignored")
        delivery = self._delivery(payload, request.body)
        out = self._events(kind, payload, delivery)
        if self._recent.seen(delivery):
            return WebhookResponse(json={"duplicate": delivery}, outcome="duplicate")
        # Its failure is this answer's failure too (the platform redelivers); a client that hangs
        # up does not cancel a publish half-way.
        if not await self._in_flight.once(delivery, lambda: self._publish(delivery, out)):
            return WebhookResponse(json={"duplicate": delivery}, outcome="duplicate")
        return WebhookResponse(json={"published": [envelope.id for _, _, envelope in out]})

    async def _publish(self, delivery: str, out: list[Published]) -> None:
        for topic, key, envelope in out:
            await self.ctx.publisher.publish(topic, key, envelope)
        self._recent.remember(delivery)  # only now: a failed publish is a 503, and Zendesk's retry publishes

    @staticmethod
    def _delivery(payload: Mapping[str, Any], body: bytes) -> str:
        """The event's id (a UUID); without a usable one, the body's digest."""
        event_id = payload.get("id")
        if isinstance(event_id, str) and 0 < len(event_id) <= 100 and event_id.isascii() and event_id.isprintable():
            return event_id
        return "sha256:" + hashlib.sha256(body).hexdigest()[:32]

    def _events(self, kind: str, payload: Mapping[str, Any], delivery: str) -> list[Published]:
        detail = payload.get("detail")
        at = parse_zendesk_time(payload.get("time"))
        if kind in GONE:
            return [_missing_event(self.ctx, ticket_key(detail), GONE[kind], delivery, at)]
        record = ticket_record(detail, system=self.ctx.name, config=self.config)
        out = [_record_event(self.ctx, record, delivery)]
        if kind == COMMENT_ADDED:
            event = payload.get("event")
            comment = comment_record(
                record.ref.key,
                event.get("comment") if isinstance(event, Mapping) else None,
                system=self.ctx.name,
                config=self.config,
                at=at or record.updated_at,
                own_user_id=self.own_user.id,
            )
            kind_of = events.RECORD_COMMENT.format(action=comment.action)
            out.append(_envelope(self.ctx, comment, kind_of, f"{delivery}:comment", comment.created_at))
        return out


def read_cursor(cursor: Cursor) -> tuple[str | None, int | None]:
    """(after_cursor, start_time) of a checkpoint; (None, None) for none or another shape."""
    if not isinstance(cursor, dict):
        return None, None
    after, start = cursor.get("cursor"), cursor.get("start_time")
    if isinstance(after, str) and after:
        return after, None
    if isinstance(start, int) and not isinstance(start, bool) and start >= 0:
        return None, start
    return None, None


class ZendeskTicketExport(PollingSource):
    """The incremental ticket export. Lifecycle: see `PollingSource`; `stop()` closes the client."""

    name = "tickets"

    def __init__(self, config: ZendeskConfig, ctx: ConnectorContext, *, client: ZendeskClient | None = None) -> None:
        self.config = config
        self.ctx = ctx
        self.interval_s = config.poll_interval_s
        self.initial_cursor = {"start_time": int(config.start_time.timestamp())} if config.start_time else None
        self._client = client

    @property
    def client(self) -> ZendeskClient:
        if self._client is None:
            self._client = ZendeskClient(self.config)
        return self._client

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def poll(self, cursor: Cursor) -> PollResult:
        after, start_time = read_cursor(cursor)
        if after is None and start_time is None:
            # No checkpoint and no start_time: from a minute ago (Zendesk refuses a later start).
            return PollResult(cursor={"start_time": int(datetime.now(UTC).timestamp()) - 60})
        out: list[Published] = []
        more = False
        next_cursor: dict[str, Any] = {"cursor": after} if after else {"start_time": start_time}
        for _ in range(self.config.max_pages_per_poll):
            page = await self.client.export_tickets(start_time=start_time, cursor=after)
            tickets = page.get("tickets")
            for ticket in tickets if isinstance(tickets, list) else []:
                out += self._ticket_events(ticket)
            following = page.get("after_cursor")
            if isinstance(following, str) and following:
                after, start_time = following, None
                next_cursor = {"cursor": following}
            more = page.get("end_of_stream") is False and isinstance(following, str) and bool(following)
            if not more:
                break
        return PollResult(events=out, cursor=next_cursor, more=more)

    def _ticket_events(self, ticket: Any) -> list[Published]:
        """A ticket of the export (deleted ones come with status `deleted`). A ticket without an
        id cannot be keyed: logged and left out, the export goes on."""
        try:
            key = ticket_key(ticket)
            event_id = f"ticket:{key}:{ticket.get('updated_at')}"
            if ticket.get("status") == "deleted":
                at = parse_zendesk_time(ticket.get("updated_at"))
                return [_missing_event(self.ctx, key, "deleted", event_id, at)]
            return [_record_event(self.ctx, ticket_record(ticket, system=self.ctx.name, config=self.config), event_id)]
        except SkippableError as exc:
            log.warning("%s: a ticket of the export was left out: %s", self.ctx.name, exc)
            return []
