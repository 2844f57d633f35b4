"""Follow: when a linked record changes (status, assignee, priority, a public comment), every
thread that shows its card sees the card updated in place, once per change; a change of the
notified fields (streams.follow.notify_fields) also gets a short reply in the thread.

Bursts are coalesced where the side effects happen: each update and reply carries the end of
its window (`not_before`, `window_s` after the change) and a `coalesce_key` per card, so the
sink carries out only the newest of the commands still waiting for one card, and never one
that ranks below a version already shown. An older version never overwrites a newer one: the
record state only moves forward (streams/flows/link.py `on_record`), and so do the versions
sent.

Pure decisions, like link.py; called from the link flow's handlers, which own the state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from schemas.commands import PostMessage, UpdateCard, command_id_for
from schemas.envelope import Envelope
from schemas.outcomes import Outcome
from schemas.records import MAX_FIELDS, DisplayField, Record, RecordBase, RecordComment
from schemas.visibility import Visibility, may_show
from streams.flows.emit import Emit, Emitter, after, event_ms
from streams.state import Card, LastComment, RecordState
from threadlink.config import FollowSettings

log = logging.getLogger(__name__)

FOLLOW = Counter(
    "threadlink_stream_follow_total",
    "Follow decisions by outcome (update, reply, unchanged, expired, comment, internal_comment, stale_comment, "
    "mirrored, not_mirrored).",
    ["outcome"],
)

DAY_MS = 24 * 3600 * 1000
COMMENT_EXCERPT = 140


@dataclass
class Follow:
    emitter: Emitter
    settings: FollowSettings

    # -- what a card shows -----------------------------------------------------------------

    def shown(self, state: RecordState, place: Visibility) -> Record:
        """The record as a card at a place of visibility `place` shows it: with the latest
        public comment the place may see, and the version of whichever is newer."""
        record = state.record
        assert record is not None
        comment = state.last_comment
        if comment is None or not may_show(comment.visibility, place):
            return record
        text = f"{comment.author}: {comment.excerpt}" if comment.author else comment.excerpt
        fields = [*record.fields[: MAX_FIELDS - 1], DisplayField(name="comment", label="Latest comment", value=text)]
        return record.model_copy(update={"fields": fields, "version": max(record.version, comment.version)})

    def notified_values(self, record: RecordBase) -> dict[str, str]:
        return {name: value for name in self.settings.notify_fields if (value := record.field_value(name)) is not None}

    # -- changes ---------------------------------------------------------------------------

    def on_change(self, state: RecordState, previous: RecordBase, cause: Envelope[Any]) -> list[Emit]:
        """The record changed: refresh every card that follows it, and tell the threads about
        a change of a notified field."""
        emits: list[Emit] = []
        for card in list(state.cards.values()):
            emits += self.refresh(state, card, cause)
        return emits

    def on_comment(self, state: RecordState, envelope: Envelope[RecordComment]) -> list[Emit]:
        comment = envelope.data
        if not comment.public or comment.by_threadlink or comment.action == "deleted":
            # An internal note never reaches a social platform; our own back-links are no news.
            FOLLOW.labels("internal_comment").inc()
            return []
        if state.last_comment is not None and comment.version < state.last_comment.version:
            FOLLOW.labels("stale_comment").inc()
            return []
        excerpt = " ".join(comment.body.split())
        if len(excerpt) > COMMENT_EXCERPT:
            excerpt = excerpt[: COMMENT_EXCERPT - 1] + "…"
        state.last_comment = LastComment(
            author=comment.author, excerpt=excerpt, version=comment.version, visibility=comment.visibility
        )
        FOLLOW.labels("comment").inc()
        if state.record is None:
            return []
        emits: list[Emit] = []
        for card in list(state.cards.values()):
            emits += self.refresh(state, card, envelope)
            if card.mirror:
                emits += self.mirror(card, envelope)
        return emits

    def mirror(self, card: Card, envelope: Envelope[RecordComment]) -> list[Emit]:
        """An escalated thread hears the ticket's public comments, attributed, each once."""
        comment = envelope.data
        if card.status not in ("requested", "posted") or not may_show(comment.visibility, card.place_visibility):
            FOLLOW.labels("not_mirrored").inc()
            return []
        thread, ref = card.thread, comment.ref
        edited = " (edited)" if comment.action == "edited" else ""
        said = PostMessage(
            command_id=command_id_for("post_message", "mirror", thread.id, comment.comment_id, comment.version),
            target=thread.platform,
            reply_key=ref.id,
            destination=thread,
            text=f"{comment.author or 'Someone'} on {ref.key}{edited}: {comment.body}"[:4000],
            about=ref,
        )
        FOLLOW.labels("mirrored").inc()
        return [self.emitter.command(said, thread.id, envelope, visibility=comment.visibility)]

    def refresh(self, state: RecordState, card: Card, cause: Envelope[Any]) -> list[Emit]:
        """Update one posted card when what it should show differs from what it was last sent,
        and reply in its thread when a notified field changed."""
        if card.status != "posted" or card.card_message_id is None or state.record is None:
            return []
        if event_ms(cause) - card.mentioned_at > self.settings.follow_days * DAY_MS:
            FOLLOW.labels("expired").inc()
            return []
        redacted = not may_show(state.record.visibility, card.place_visibility)
        shown = self.shown(state, card.place_visibility)
        digest = shown.card_digest() + ("-redacted" if redacted else "")
        if digest == card.digest_sent or (card.version_sent is not None and shown.version < card.version_sent):
            FOLLOW.labels("unchanged").inc()
            return []
        thread, ref = card.thread, shown.ref
        card_key = f"{thread.id}|{ref.id}"
        window_end = after(cause, self.settings.window_s)  # type: ignore[arg-type]
        update = UpdateCard(
            command_id=command_id_for("update_card", thread.id, ref.id, card.card_message_id, shown.version, digest),
            target=thread.platform,
            reply_key=ref.id,
            destination=thread,
            record=shown,
            card_message_id=card.card_message_id,
            redacted=redacted,
            not_before=window_end,
            coalesce_key=f"card:{card_key}",
            coalesce_rank=shown.version,
        )
        card.version_sent, card.digest_sent = shown.version, digest
        emits = [self.emitter.command(update, thread.id, cause, visibility=shown.visibility)]
        FOLLOW.labels("update").inc()

        now = {} if redacted else self.notified_values(shown)
        before = card.notified
        changed = [name for name in now if before.get(name) not in (None, now[name])]
        card.notified = now
        if changed:
            labels = {field.name: field.label for field in shown.fields}
            text = f"{ref.key}: " + ", ".join(
                f"{labels.get(name, name)} {before[name]} → {now[name]}" for name in changed
            )
            reply = PostMessage(
                command_id=command_id_for("post_message", "follow", thread.id, ref.id, shown.version),
                target=thread.platform,
                reply_key=ref.id,
                destination=thread,
                text=text,
                about=ref,
                not_before=window_end,
                coalesce_key=f"reply:{card_key}",
                coalesce_rank=shown.version,
            )
            emits.append(self.emitter.command(reply, thread.id, cause, visibility=shown.visibility))
            FOLLOW.labels("reply").inc()
        return emits

    def on_updated(self, state: RecordState, card: Card, envelope: Envelope[Outcome]) -> list[Emit]:
        """An update's outcome: the card shows that version now, or is gone from its thread."""
        outcome = envelope.data
        if outcome.status == "done" and outcome.version is not None:
            if card.version_shown is None or outcome.version >= card.version_shown:
                card.version_shown = outcome.version
                if outcome.version == card.version_sent:
                    card.digest_shown = card.digest_sent
        elif outcome.status == "failed" and outcome.error_kind == "skippable":
            # The card's message is gone (deleted by someone) or cannot be edited: stop following.
            log.info("%s: its card in %s cannot be updated (%s)", card.thread.id, outcome.record, outcome.reason)
            card.status, card.reason = "removed", outcome.reason
        return []
