"""Escalate: a thread becomes a ticket, and from then on the two hear each other.

    social.events (by thread) --on_social--> commands.<ticketing>  CreateTicket (once per thread)
                                                                   AddComment (each later reply)
    sinks.outcomes (by thread) --on_outcome--> commands.<platform>  PostMessage ("opened PROJ-9")
                                               links.requests       link the ticket to the thread,
                                                                    mirroring its comments
    records.comments (by record) --Follow--> commands.<platform>    PostMessage (an agent's public
                                                                    comment, attributed)

Triggers: the configured reaction on any message of the thread, the configured command
addressed to threadlink (`@threadlink ticket`), or a card's `threadlink.open_ticket` button.
Exactly one ticket per thread: the thread's state says it was asked for, so a second trigger
(two people reacting at once, a redelivery, a replay) asks nothing more, and the command's id is
the thread's, so the sink's ledger and its find-before-create keep a retried one single. Replies
said while the ticket is being opened wait in the thread's state and become its first comments.

Mirroring rules (documented in the README): replies by people become ticket comments,
attributed, each once (the comment's id is the message's); an edit becomes a comment saying
the message was edited, with its new text; a deletion is not mirrored (the ticket keeps the
record of what was said). threadlink's own messages are never mirrored, and its own comments
(`by_threadlink`) never come back, so the two sides never echo each other. Internal notes never
reach the thread (Follow checks `public` and visibility).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from schemas import events
from schemas.commands import AddComment, AddReaction, CreateTicket, PostMessage, command_id_for
from schemas.envelope import Envelope
from schemas.links import LinkRequest
from schemas.outcomes import Outcome
from schemas.social import Author, SocialAction, SocialEvent, SocialMessage, SocialReaction, ThreadRef
from schemas.visibility import Visibility
from streams.flows.emit import Emit, Emitter
from streams.state import MAX_LINE, MAX_PENDING, Escalation, Line, ThreadState
from threadlink.config import EscalateSettings

log = logging.getLogger(__name__)

ESCALATE = Counter(
    "threadlink_stream_escalate_total",
    "Escalate decisions by outcome (requested, already, opened, failed, mirrored, pending, skipped).",
    ["outcome"],
)

OPEN_TICKET_ACTION = "threadlink.open_ticket"
SUMMARY_LENGTH = 120


def _who(author: Author) -> str:
    return author.display_name or author.id


@dataclass
class Escalate:
    emitter: Emitter
    settings: EscalateSettings

    def __post_init__(self) -> None:
        command = self.settings.command
        self._command = re.compile(rf"(?<![\w-]){re.escape(command)}(?![\w-])", re.IGNORECASE) if command else None

    @property
    def enabled(self) -> bool:
        return self.settings.target is not None

    # -- by thread: triggers and replies ---------------------------------------------------

    def on_social(self, thread: ThreadState, envelope: Envelope[SocialEvent]) -> list[Emit]:
        if not self.enabled:
            return []
        event = envelope.data
        if isinstance(event, SocialMessage):
            return self._on_message(thread, event, envelope)
        if isinstance(event, SocialReaction):
            if event.action == "added" and not event.author.is_threadlink and event.reaction == self.settings.reaction:
                return self.request_ticket(
                    thread, event.thread, envelope, asked_by=_who(event.author), place=event.channel_visibility
                )
            return []
        if isinstance(event, SocialAction) and event.action_id == OPEN_TICKET_ACTION and not event.author.is_threadlink:
            return self.request_ticket(
                thread, event.thread, envelope, asked_by=_who(event.author), place=event.channel_visibility
            )
        return []

    def _on_message(self, thread: ThreadState, message: SocialMessage, envelope: Envelope[Any]) -> list[Emit]:
        if message.author.is_threadlink:
            return []  # never our own words: no loops
        if message.action == "posted" and self._is_command(message):
            return self.request_ticket(
                thread, message.thread, envelope, asked_by=_who(message.author), place=message.channel_visibility
            )
        escalation = thread.escalation
        if escalation is None or escalation.status == "failed":
            if message.action == "posted":
                thread.heard(Line.of(message), self.settings.transcript_messages)
            return []
        if message.action == "deleted":
            ESCALATE.labels("skipped").inc()
            return []  # the ticket keeps the record of what was said
        line = Line.of(message)
        if message.action == "edited":
            line = line.model_copy(update={"text": f"(edited) {line.text}"[:MAX_LINE]})
        if escalation.status == "requested":
            if len(escalation.pending) < MAX_PENDING:
                escalation.pending.append(line)
                ESCALATE.labels("pending").inc()
            else:
                log.warning(
                    "%s: more than %d replies while its ticket opens; the rest are not mirrored",
                    message.thread.id,
                    MAX_PENDING,
                )
            return []
        return [self._mirror(escalation, message.thread, line, envelope, edited=message.action == "edited")]

    def _is_command(self, message: SocialMessage) -> bool:
        return self._command is not None and message.mentions_threadlink and bool(self._command.search(message.text))

    def request_ticket(
        self,
        thread: ThreadState,
        where: ThreadRef,
        cause: Envelope[Any],
        *,
        asked_by: str,
        place: Visibility,
        acknowledge: bool = True,
    ) -> list[Emit]:
        escalation = thread.escalation
        if escalation is not None and escalation.status != "failed":
            ESCALATE.labels("already").inc()
            return []
        attempt = escalation.attempt + 1 if escalation is not None else 1
        assert self.settings.target is not None
        lines = thread.transcript[-self.settings.transcript_messages :]
        first = next((line.text for line in lines), "") or f"{where.platform} thread in {where.channel}"
        summary = " ".join(first.split())
        summary = summary if len(summary) <= SUMMARY_LENGTH else summary[: SUMMARY_LENGTH - 1] + "…"
        transcript = "\n".join(f"{line.author}: {line.text}" for line in lines)
        create = CreateTicket(
            command_id=command_id_for("create_ticket", where.id, attempt),
            target=self.settings.target,
            reply_key=where.id,
            thread=where,
            project=self.settings.project,
            summary=summary,
            description=f"Opened from a {where.platform} thread by {asked_by}.\n\n{transcript}".strip(),
        )
        thread.escalation = Escalation(
            status="requested", attempt=attempt, target=self.settings.target, thread=where, place_visibility=place
        )
        ESCALATE.labels("requested").inc()
        emits = [self.emitter.command(create, where.id, cause, visibility=cause.visibility)]
        trigger = getattr(cause.data, "message_id", None)
        if (
            acknowledge
            and self.settings.acknowledge
            and trigger
            and isinstance(cause.data, SocialMessage | SocialReaction)
        ):
            # Quick feedback where it was asked: the ticket itself may take seconds.
            seen = AddReaction(
                command_id=command_id_for("add_reaction", where.id, trigger, attempt),
                target=where.platform,
                reply_key=where.id,
                destination=where,
                message_id=trigger,
                reaction=self.settings.acknowledge,
            )
            emits.append(self.emitter.command(seen, where.id, cause, visibility=place))
        return emits

    def _mirror(
        self, escalation: Escalation, where: ThreadRef, line: Line, cause: Envelope[Any], *, edited: bool = False
    ) -> Emit:
        assert escalation.ticket is not None
        comment = AddComment(
            command_id=command_id_for("mirror_reply", where.id, line.message_id, line.text if edited else ""),
            target=escalation.ticket.system,
            reply_key=escalation.ticket.id,
            record=escalation.ticket,
            thread=where,
            body=f"{line.author} ({where.platform}): {line.text}",
        )
        ESCALATE.labels("mirrored").inc()
        return self.emitter.command(comment, escalation.ticket.id, cause, visibility=cause.visibility)

    # -- by thread: the sink opened (or could not open) the ticket -------------------------

    def on_outcome(self, thread: ThreadState, envelope: Envelope[Outcome]) -> list[Emit]:
        outcome = envelope.data
        escalation = thread.escalation
        if outcome.command_kind != "create_ticket" or escalation is None or escalation.status != "requested":
            return []
        where = escalation.thread
        if outcome.command_id != command_id_for("create_ticket", where.id, escalation.attempt):
            return []  # an earlier attempt's answer
        if outcome.status != "done" or outcome.effect is None or outcome.effect.created is None:
            escalation.status, escalation.reason = "failed", outcome.reason or outcome.status
            ESCALATE.labels("failed").inc()
            return [self._say(where, f"Could not open a ticket: {escalation.reason}", envelope, "failed", escalation)]
        ticket = outcome.effect.created
        escalation.status, escalation.ticket, escalation.url = "opened", ticket, outcome.effect.url
        thread.transcript = []  # quoted in the ticket: no need to keep it
        ESCALATE.labels("opened").inc()
        link = LinkRequest(
            thread=where,
            message_id=f"escalated:{ticket.id}",
            record=ticket,
            channel_visibility=escalation.place_visibility,
            mirror_comments=True,
        )
        emits = [
            self._say(
                where,
                f"Opened {ticket.key}" + (f": {escalation.url}" if escalation.url else ""),
                envelope,
                "opened",
                escalation,
            ),
            self.emitter.event(
                self.emitter.names.link_requests,
                ticket.id,
                link,
                type=events.LINK_REQUESTED.format(action="link"),
                cause=envelope,
            ),
        ]
        emits += [self._mirror(escalation, where, line, envelope) for line in escalation.pending]
        escalation.pending = []
        return emits

    def _say(self, where: ThreadRef, text: str, cause: Envelope[Any], what: str, escalation: Escalation) -> Emit:
        message = PostMessage(
            command_id=command_id_for("post_message", "escalate", where.id, escalation.attempt, what),
            target=where.platform,
            reply_key=where.id,
            destination=where,
            text=text[:4000],
            about=escalation.ticket,
        )
        return self.emitter.command(message, where.id, cause, visibility=cause.visibility)
