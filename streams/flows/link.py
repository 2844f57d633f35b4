"""Link: a message names a record -> the record's card is posted into the thread, the link is
remembered, and the record hears back where it is discussed. An edit that drops the name, or
the message's deletion, takes the card back.

    social.events (by thread) --on_social--> links.requests (by record): link / unlink
    links.requests + record state --on_link_request--> commands.<platform>  PostCard, DeleteCard
                                                       commands.<system>    AddComment, FetchRecord
    records (by record) --on_record--> record state; waiting mentions get their cards; Follow
    sinks.outcomes (by record) --on_outcome--> card state (posted with its message id, or failed); links

Every handler here is a pure decision: it reads and changes the state it is given and returns
what to send. streams/flows/runner.py does the Kafka part.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from schemas import events
from schemas.commands import AddComment, DeleteCard, FetchRecord, PostCard, command_id_for
from schemas.envelope import Envelope
from schemas.links import LinkRequest
from schemas.outcomes import Outcome
from schemas.records import RecordBase, RecordEvent, RecordMissing, RecordRef
from schemas.social import SocialEvent, SocialMessage, ThreadLinked, ThreadRef
from schemas.topics import TopicNames
from schemas.visibility import Visibility, may_show
from streams.flows.emit import Emit, Emitter, event_ms
from streams.flows.follow import Follow
from streams.mentions import MentionExtractor
from streams.state import Card, RecordState, ThreadState, Waiting
from threadlink.config import StreamSettings

log = logging.getLogger(__name__)

LINKS = Counter(
    "threadlink_stream_links_total",
    "Link requests by outcome (carded, waiting, missing, already_linked, hidden, unlinked, stale_record).",
    ["outcome"],
)
MESSAGES = Counter(
    "threadlink_stream_messages_total",
    "Social events by outcome (mentions, none, own, edited, deleted, over_limit, ignored).",
    ["outcome"],
)
OUTCOMES = Counter(
    "threadlink_stream_outcomes_total",
    "Sink outcomes the flows took in, by command kind and status.",
    ["kind", "status"],
)

#: A record a look-up found missing is looked up again when mentioned this long after (event time).
REFETCH_MISSING_AFTER_MS = 3600 * 1000


@dataclass
class LinkFlow:
    names: TopicNames
    settings: StreamSettings
    emitter: Emitter = field(init=False)
    extractor: MentionExtractor = field(init=False)
    follow: Follow = field(init=False)

    def __post_init__(self) -> None:
        self.emitter = Emitter(self.names)
        self._rules_on_records = any(rule.match.on_records for rule in self.settings.reach.rules)
        self.extractor = MentionExtractor(
            [(p.system, p.regex, p.key, p.lowercase) for p in self.settings.mention_patterns]
        )
        self.follow = Follow(self.emitter, self.settings.follow)

    # -- by thread ---------------------------------------------------------------------------

    def on_social(self, thread: ThreadState, envelope: Envelope[SocialEvent]) -> list[Emit]:
        """Find what a message names (or no longer names) and re-key each record's request."""
        event = envelope.data
        if not isinstance(event, SocialMessage):
            MESSAGES.labels("ignored").inc()  # reactions: the dialog flows' business
            return []
        if event.author.is_threadlink:
            MESSAGES.labels("own").inc()  # never answer ourselves: no loops
            return []
        before = thread.named.get(event.message_id)
        if before is None and event.previous_text is not None:
            before = [ref.id for ref in self._names(event.previous_text)]
        before = before or []
        refs = self._names(event.text) if event.action != "deleted" else []
        thread.remember(event.message_id, [ref.id for ref in refs])

        emits: list[Emit] = []
        fetches_left = self.settings.limits.fetches_per_message
        for ref in refs:
            if event.action != "posted" and ref.id in before:
                continue  # an edit that kept this name: nothing new
            emits.append(self._request(envelope, event, ref, "link", may_fetch=fetches_left > 0))
            fetches_left -= 1
        named_elsewhere = thread.records_named_elsewhere(event.message_id)
        kept = {ref.id for ref in refs}
        for record_id in before:
            if record_id not in kept and record_id not in named_elsewhere:
                system, _, key = record_id.partition(":")
                emits.append(self._request(envelope, event, RecordRef(system=system, key=key), "unlink"))
        MESSAGES.labels(
            {"posted": "mentions" if refs else "none", "edited": "edited", "deleted": "deleted"}[event.action]
        ).inc()
        return emits

    def _names(self, text: str) -> list[RecordRef]:
        refs = self.extractor.extract(text)
        limit = self.settings.limits.mentions_per_message
        if len(refs) > limit:
            MESSAGES.labels("over_limit").inc()
            log.info("a message names %d records; linking the first %d (limits.mentions_per_message)", len(refs), limit)
        return refs[:limit]

    def _request(
        self, cause: Envelope[SocialEvent], message: SocialMessage, ref: RecordRef, action: str, may_fetch: bool = True
    ) -> Emit:
        request = LinkRequest(
            action=action,  # type: ignore[arg-type]
            thread=message.thread,
            message_id=message.message_id,
            record=ref,
            permalink=message.permalink,
            channel_visibility=message.channel_visibility,
            may_fetch=may_fetch,
        )
        return self.emitter.event(
            self.names.link_requests,
            ref.id,
            request,
            type=events.LINK_REQUESTED.format(action=action),
            cause=cause,
        )

    # -- by record ---------------------------------------------------------------------------

    def on_link_request(self, state: RecordState, envelope: Envelope[LinkRequest]) -> list[Emit]:
        request = envelope.data
        if request.action == "unlink":
            return self._unlink(state, request, envelope)
        now = event_ms(envelope)
        card = state.cards.get(request.thread.id)
        if card is not None and card.status in ("requested", "posted", "hidden"):
            card.mirror = card.mirror or request.mirror_comments
            if request.message_id not in card.mentioned_by:
                card.mentioned_by.append(request.message_id)
            card.mentioned_at = max(card.mentioned_at, now)
            LINKS.labels("already_linked").inc()
            return []
        if state.record is not None:
            return self._card(state, state.record, request, envelope, now)
        if state.missing is not None and now - state.missing_at < REFETCH_MISSING_AFTER_MS:
            LINKS.labels("missing").inc()
            return []
        return self._wait(state, request, envelope, now)

    def _card(
        self,
        state: RecordState,
        record: RecordBase,
        request: LinkRequest | Waiting,
        cause: Envelope[Any],
        now: int,
    ) -> list[Emit]:
        """The card of a known record for one thread: posted, or hidden where it may not show."""
        thread = request.thread
        place = request.channel_visibility if isinstance(request, LinkRequest) else request.place_visibility
        card = state.cards.get(thread.id)
        linked: list[Emit] = []
        if card is None:
            card = Card(thread=thread, place_visibility=place, status="requested", permalink=request.permalink)
            state.cards[thread.id] = card
            linked = self._linked(thread, record, request, place, cause)
        elif card.status == "removed":
            card.generation += 1
        card.place_visibility = place
        card.mirror = card.mirror or (request.mirror_comments if isinstance(request, LinkRequest) else request.mirror)
        card.mentioned_by = list(dict.fromkeys([*card.mentioned_by, request.message_id]))
        card.mentioned_at = max(card.mentioned_at, now)
        card.reason = None
        for dropped in state.trim():
            log.info("%s: too many cards; %s no longer follows it", record.ref.id, dropped)
        if not may_show(record.visibility, place):
            card.status = "hidden"
            LINKS.labels("hidden").inc()
            log.info("not showing %s (%s) in %s (%s)", record.ref.id, record.visibility, thread.id, place)
            hidden = self.emitter.link(thread, record.ref, status="hidden", message_id=request.message_id, cause=cause)
            return [hidden, *linked]
        card.status = "requested"
        shown = self.follow.shown(state, place)
        card.version_sent, card.digest_sent = shown.version, shown.card_digest()
        card.notified = self.follow.notified_values(shown)
        post = PostCard(
            command_id=command_id_for("post_card", thread.id, record.ref.id, card.generation),
            target=thread.platform,
            reply_key=record.ref.id,
            destination=thread,
            record=shown,
            in_reply_to=request.message_id,
        )
        emits = [self.emitter.command(post, thread.id, cause, visibility=record.visibility)]
        emits.append(self._backlink(thread, record, request, place, cause))
        LINKS.labels("carded").inc()
        return emits + linked

    def _linked(
        self,
        thread: ThreadRef,
        record: RecordBase,
        request: LinkRequest | Waiting,
        place: Visibility,
        cause: Envelope[Any],
    ) -> list[Emit]:
        """Tells the thread's key which record it names, when a routing rule matches on records."""
        if not self._rules_on_records:
            return []
        labels = getattr(record, "labels", None) or getattr(record, "tags", None) or []
        linked = ThreadLinked(
            thread=thread,
            message_id=request.message_id,
            permalink=request.permalink,
            record=record.ref,
            record_kind=record.kind,  # type: ignore[attr-defined]
            labels=[str(label)[:100] for label in labels][:50],
            project=getattr(record, "project", None),
            record_visibility=record.visibility,
            channel_visibility=place,
        )
        names = self.emitter.names
        return [self.emitter.event(names.social_events, thread.id, linked, type=events.SOCIAL_LINKED, cause=cause)]

    def _backlink(
        self, thread: ThreadRef, record: RecordBase, request: LinkRequest | Waiting, place: str, cause: Envelope[Any]
    ) -> Emit:
        """The record hears where it is discussed. A place more restricted than the record's
        own audience is not named (nor linked) on it: the comment only says that it was."""
        open_to_record_audience = may_show(place, record.visibility)  # type: ignore[arg-type]
        comment = AddComment(
            command_id=command_id_for("add_comment", thread.id, record.ref.id),
            target=record.ref.system,
            reply_key=record.ref.id,
            record=record.ref,
            thread=thread if open_to_record_audience else None,
            permalink=request.permalink if open_to_record_audience else None,
            body=(
                f"Mentioned in a {thread.platform} thread (channel {thread.channel}):"
                if open_to_record_audience
                else f"Mentioned in a private {thread.platform} conversation."
            ),
        )
        return self.emitter.command(comment, record.ref.id, cause, visibility=record.visibility)

    def _wait(self, state: RecordState, request: LinkRequest, envelope: Envelope[LinkRequest], now: int) -> list[Emit]:
        """An unknown record: the mention waits while the record's system is asked, once at a
        time; a fetch that failed for good is asked again by the next mention."""
        state.waiting = [w for w in state.waiting if w.thread.id != request.thread.id]
        state.waiting.append(
            Waiting(
                thread=request.thread,
                message_id=request.message_id,
                permalink=request.permalink,
                place_visibility=request.channel_visibility,
                traceparent=envelope.traceparent,
                mentioned_at=now,
                mirror=request.mirror_comments,
            )
        )
        state.trim()
        LINKS.labels("waiting").inc()
        if state.fetch_status == "requested" or not request.may_fetch:
            return []
        state.fetch_attempt += 1
        state.fetch_status = "requested"
        state.missing = None
        fetch = FetchRecord(
            command_id=command_id_for("fetch_record", request.record.id, state.fetch_attempt),
            target=request.record.system,
            reply_key=request.record.id,
            record=request.record,
        )
        return [self.emitter.command(fetch, request.record.id, envelope, visibility="restricted")]

    def _unlink(self, state: RecordState, request: LinkRequest, envelope: Envelope[LinkRequest]) -> list[Emit]:
        state.waiting = [
            w for w in state.waiting if not (w.thread.id == request.thread.id and w.message_id == request.message_id)
        ]
        card = state.cards.get(request.thread.id)
        if card is None:
            return []
        card.mentioned_by = [m for m in card.mentioned_by if m != request.message_id]
        if card.mentioned_by:
            return []  # another message of the thread still names the record
        LINKS.labels("unlinked").inc()
        ref = request.record
        emits = [self.emitter.link(card.thread, ref, status="removed", message_id=request.message_id, cause=envelope)]
        if card.status == "posted" and card.card_message_id:
            emits.append(self._delete(card, ref, envelope, "the message that named it no longer does"))
            card.status = "removed"
        elif card.status == "requested":
            card.status = "removed"  # its outcome will say where it went: deleted then
        else:
            del state.cards[request.thread.id]
        return emits

    def _delete(self, card: Card, ref: RecordRef, cause: Envelope[Any], reason: str) -> Emit:
        assert card.card_message_id is not None
        delete = DeleteCard(
            command_id=command_id_for("delete_card", card.thread.id, card.card_message_id),
            target=card.thread.platform,
            reply_key=ref.id,
            destination=card.thread,
            record=ref,
            card_message_id=card.card_message_id,
            reason=reason,
        )
        return self.emitter.command(delete, card.thread.id, cause, visibility="restricted")

    def on_record(self, state: RecordState, envelope: Envelope[RecordEvent]) -> list[Emit]:
        """Keep the record current (never older than what is stored), release the mentions that
        waited for it, and let Follow update the cards that show it."""
        data = envelope.data
        stored = state.record
        if (stored is not None or state.missing is not None) and data.version < state.version:
            LINKS.labels("stale_record").inc()  # a late redelivery must not undo a newer update
            return []
        if isinstance(data, RecordMissing):
            return self._missing(state, data, event_ms(envelope))
        if stored is not None and data.version == stored.version and data.card_digest() == stored.card_digest():
            return []  # the same state again (a redelivery, a fetch answered by a webhook too)
        state.record, state.missing, state.fetch_status = data, None, None
        now = event_ms(envelope)
        emits: list[Emit] = []
        for waiting in state.waiting:
            if waiting.thread.id not in state.cards or state.cards[waiting.thread.id].status in ("failed", "removed"):
                emits += self._card(state, data, waiting, envelope, max(now, waiting.mentioned_at))
        state.waiting = []
        for card in list(state.cards.values()):
            if card.status == "hidden" and card.mentioned_by and may_show(data.visibility, card.place_visibility):
                # It may show there now (its project opened up): the thread gets its card after all.
                again = Waiting(
                    thread=card.thread,
                    message_id=card.mentioned_by[-1],
                    permalink=card.permalink,
                    place_visibility=card.place_visibility,
                    mentioned_at=card.mentioned_at,
                    mirror=card.mirror,
                )
                emits += self._card(state, data, again, envelope, card.mentioned_at)
        if stored is not None:
            emits += self.follow.on_change(state, stored, envelope)
        return emits

    def _missing(self, state: RecordState, data: RecordMissing, now: int) -> list[Emit]:
        LINKS.labels("missing").inc(len(state.waiting))
        if state.waiting:
            log.info("%s does not exist (%s): %d mention(s) get no card", data.ref.id, data.reason, len(state.waiting))
        state.record, state.waiting, state.fetch_status = None, [], None
        state.missing, state.missing_version, state.missing_at = data.reason, data.version, now
        return []

    def on_outcome(self, state: RecordState, envelope: Envelope[Outcome]) -> list[Emit]:
        """What a sink did: the card is posted (with its message id) or failed for good; an
        update showed a version; a fetch is over."""
        outcome = envelope.data
        OUTCOMES.labels(outcome.command_kind, outcome.status).inc()
        if outcome.command_kind == "fetch_record":
            if state.fetch_status == "requested":
                state.fetch_status = "failed" if outcome.status == "failed" else None
            return []
        thread = outcome.destination
        card = state.cards.get(thread.id) if isinstance(thread, ThreadRef) else None
        if card is None or outcome.record is None:
            return []
        ref = outcome.record
        if outcome.command_kind == "post_card":
            expected = command_id_for("post_card", card.thread.id, ref.id, card.generation)
            if outcome.command_id != expected:
                return []  # an earlier generation's card: already superseded
            return self._posted(state, card, ref, envelope)
        if outcome.command_kind == "update_card":
            return self.follow.on_updated(state, card, envelope)
        if outcome.command_kind == "delete_card" and card.status == "removed":
            # Kept (bounded by MAX_CARDS): its generation makes a later card a new one.
            card.card_message_id = None
        return []

    def _posted(self, state: RecordState, card: Card, ref: RecordRef, envelope: Envelope[Outcome]) -> list[Emit]:
        outcome = envelope.data
        first_message = card.mentioned_by[0] if card.mentioned_by else ""
        if outcome.status != "done":
            if card.status == "requested":
                card.status, card.reason = "failed", outcome.reason
            log.warning("%s: its card in %s failed: %s", ref.id, card.thread.id, outcome.reason)
            return [
                self.emitter.link(
                    card.thread, ref, status="failed", message_id=first_message, reason=outcome.reason, cause=envelope
                )
            ]
        card.card_message_id = outcome.effect.message_id if outcome.effect else None
        card.version_shown, card.digest_shown = card.version_sent, card.digest_sent
        if card.status == "removed" and card.card_message_id:
            return [self._delete(card, ref, envelope, "the message that named it was taken back")]
        card.status = "posted"
        emits = [
            self.emitter.link(
                card.thread,
                ref,
                status="posted",
                message_id=first_message,
                card_message_id=card.card_message_id,
                version_shown=card.version_shown,
                cause=envelope,
            )
        ]
        return emits + self.follow.refresh(state, card, envelope)
