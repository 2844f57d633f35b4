"""Link: a message mentions a record -> the record's card is posted into the thread, the link
is remembered, and the record hears back where it is discussed.

    social.messages (by thread) --on_message--> links.requests (by record)
    links.requests + records table --on_link_request--> commands.<platform> PostCard
                                                       commands.<system>   AddComment / FetchRecord
                                                       links
    records (by record) --on_record--> records table, and the requests that waited for it
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from pydantic import TypeAdapter

from schemas import events
from schemas.commands import AddComment, FetchRecord, PostCard, command_id_for
from schemas.envelope import Envelope, utcnow
from schemas.links import Link, LinkRequest
from schemas.records import RecordEvent, RecordMissing, TicketRecord
from schemas.social import SocialMessage
from streams.flows.common import process, send, send_command
from streams.mentions import MentionExtractor
from streams.visibility import may_show

if TYPE_CHECKING:
    from streams.app import StreamsContext

log = logging.getLogger(__name__)

SOCIAL = TypeAdapter(Envelope[SocialMessage])
REQUEST = TypeAdapter(Envelope[LinkRequest])
RECORD = TypeAdapter(Envelope[RecordEvent])
TICKET = TypeAdapter(TicketRecord)

LINKS = Counter(
    "threadlink_stream_links_total",
    "Link requests by outcome (carded, waiting, missing, already_linked, hidden, stale_record).",
    ["outcome"],
)
MESSAGES = Counter(
    "threadlink_stream_messages_total", "Social messages by outcome (mentions, none, own, ignored).", ["outcome"]
)


#: A mention waits this long for its record before the record is asked for again.
REFETCH_AFTER_S = 60.0
#: Threads waiting for one record; beyond this the oldest are dropped (and logged).
MAX_WAITING_PER_RECORD = 100


def is_older(candidate: TicketRecord, current: TicketRecord) -> bool:
    return bool(candidate.updated_at and current.updated_at and candidate.updated_at < current.updated_at)


def register(ctx: StreamsContext) -> None:
    app, topics, tables = ctx.app, ctx.topics, ctx.tables
    extractor = MentionExtractor([(p.system, p.regex) for p in ctx.settings.streams.mention_patterns])

    async def run(stream: Any, adapter: TypeAdapter[Any], handler: Any, what: str) -> None:
        await process(stream, adapter, handler, topics.dead_letters, consumer="streams.link", what=what)

    async def emit_link(request: LinkRequest, record: TicketRecord, traceparent: str | None) -> None:
        thread, ref = request.thread, request.record
        if not may_show(record.visibility, request.channel_visibility):
            LINKS.labels("hidden").inc()
            log.info("not showing %s (%s) in %s (%s)", ref.id, record.visibility, thread.id, request.channel_visibility)
            return
        card = PostCard(
            command_id=command_id_for("post_card", thread.id, ref.id),
            target=thread.platform,
            thread=thread,
            record=record,
            in_reply_to=request.message_id,
        )
        await send_command(topics, card, thread.id, traceparent)
        link = Link(thread=thread, record=ref, message_id=request.message_id, created_at=utcnow())
        await send(
            topics.links,
            link.id,
            Envelope.wrap(
                link, type=events.LINK_CREATED, source_system="streams", subject=link.id, parent_traceparent=traceparent
            ),
        )
        backlink = AddComment(
            command_id=command_id_for("add_comment", thread.id, ref.id),
            target=ref.system,
            record=ref,
            thread=thread,
            permalink=request.permalink,
            body=f"Mentioned in a {thread.platform} thread (channel {thread.channel}):",
        )
        await send_command(topics, backlink, ref.id, traceparent)
        # Marked only after the commands are sent: a crash before this re-sends them, and the
        # sinks' ledger (deterministic command ids) keeps the card single.
        tables.linked[link.id] = utcnow().isoformat()
        LINKS.labels("carded").inc()

    @app.agent(topics.social_messages, name="link.on_message")
    async def on_message(stream: Any) -> None:
        """Keyed by thread: find mentions, re-key each by record."""

        async def handle(envelope: Envelope[SocialMessage]) -> None:
            message = envelope.data
            if message.author.is_threadlink:
                MESSAGES.labels("own").inc()  # never answer ourselves: no loops
                return
            if message.action == "deleted":
                MESSAGES.labels("ignored").inc()
                return
            refs = extractor.extract(message.text)
            MESSAGES.labels("mentions" if refs else "none").inc()
            for ref in refs:
                request = LinkRequest(
                    thread=message.thread,
                    message_id=message.message_id,
                    record=ref,
                    permalink=message.permalink,
                    channel_visibility=message.channel_visibility,
                )
                await send(
                    topics.link_requests,
                    ref.id,
                    Envelope.wrap(
                        request,
                        type=events.LINK_REQUESTED,
                        source_system="streams",
                        subject=ref.id,
                        visibility=envelope.visibility,
                        parent_traceparent=envelope.traceparent,
                    ),
                )

        await run(stream, SOCIAL, handle, "social message")

    @app.agent(topics.link_requests, name="link.on_link_request")
    async def on_link_request(stream: Any) -> None:
        """Keyed by record: meet the record table; fetch records we have never seen."""

        async def handle(envelope: Envelope[LinkRequest]) -> None:
            request = envelope.data
            record_id = request.record.id
            if f"{request.thread.id}|{record_id}" in tables.linked:
                LINKS.labels("already_linked").inc()
                return
            known = tables.records.get(record_id)
            if known is not None:
                await emit_link(request, TICKET.validate_python(known), envelope.traceparent)
                return
            pending = dict(tables.pending.get(record_id) or {"fetched_at": 0.0, "requests": []})
            waiting = [w for w in pending["requests"] if w["thread"] != request.thread.model_dump()]
            waiting.append(request.model_dump(mode="json") | {"traceparent": envelope.traceparent})
            if len(waiting) > MAX_WAITING_PER_RECORD:
                log.warning("%s: %d threads wait for it; dropping the oldest", record_id, len(waiting))
            pending["requests"] = waiting[-MAX_WAITING_PER_RECORD:]
            LINKS.labels("waiting").inc()
            # One fetch at a time; another only when the last one went unanswered for a while
            # (dead-lettered, or the connector was down), so a mention never waits forever.
            refetch = time.time() - pending["fetched_at"] > REFETCH_AFTER_S
            if refetch:
                pending["fetched_at"] = time.time()
            tables.pending[record_id] = pending
            if refetch:
                fetch = FetchRecord(
                    command_id=command_id_for("fetch_record", record_id, request.thread.id, request.message_id),
                    target=request.record.system,
                    record=request.record,
                )
                await send_command(topics, fetch, record_id, envelope.traceparent)

        await run(stream, REQUEST, handle, "link request")

    @app.agent(topics.records, name="link.on_record")
    async def on_record(stream: Any) -> None:
        """Keyed by record: keep the table current; release the requests that waited."""

        async def handle(envelope: Envelope[RecordEvent]) -> None:
            data = envelope.data
            record_id = data.ref.id
            waiting = list((tables.pending.get(record_id) or {}).get("requests", []))
            if isinstance(data, RecordMissing):
                tables.pending.pop(record_id, None)
                tables.records.pop(record_id, None)
                for _ in waiting:
                    LINKS.labels("missing").inc()
                if waiting:
                    log.info("%s does not exist (%s): %d mention(s) get no card", record_id, data.reason, len(waiting))
                return
            known = tables.records.get(record_id)
            if known is not None and is_older(data, TICKET.validate_python(known)):
                LINKS.labels("stale_record").inc()  # a late redelivery must not undo a newer update
                record = TICKET.validate_python(known)
            else:
                tables.records[record_id] = data.model_dump(mode="json")
                record = data
            for item in waiting:
                traceparent = item.get("traceparent")
                request = LinkRequest.model_validate(item)
                if f"{request.thread.id}|{record_id}" not in tables.linked:
                    await emit_link(request, record, traceparent or envelope.traceparent)
            # Only now: if a link above failed, the rest still wait (and the done ones are in `linked`).
            tables.pending.pop(record_id, None)

        await run(stream, RECORD, handle, "record")
