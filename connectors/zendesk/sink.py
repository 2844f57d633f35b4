"""Commands for Zendesk: look a ticket up (FetchRecord), add a comment (AddComment: an internal note
unless `comment_public`), open a thread's ticket (CreateTicket: find-before-create by the
thread's external_id, and an Idempotency-Key)."""

from __future__ import annotations

import logging
import re
from contextlib import aclosing
from typing import Any

from connectors.base import ConnectorContext, Lane, Sink
from connectors.errors import (
    ConnectorError,
    NotFoundError,
    RetriableError,
    SkippableError,
    outcome_unknown,
)
from connectors.runtime.dedup import RecentIds
from connectors.runtime.lookups import publish_looked_up
from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.config import ZendeskConfig
from connectors.zendesk.mapping import (
    backlink_comment,
    is_ticket_key,
    thread_external_id,
    ticket_description,
    ticket_key,
    ticket_record,
    ticket_subject,
    zendesk_id,
)
from connectors.zendesk.source import OwnUser
from schemas import events
from schemas.commands import AddComment, Command, CreateTicket, FetchRecord
from schemas.envelope import Envelope
from schemas.outcomes import Effect
from schemas.records import RecordMissing, RecordRef

log = logging.getLogger(__name__)

#: Zendesk's own limit on updates of one ticket: 30 in 10 minutes (per user and ticket).
TICKET_UPDATES_PER_S = 30 / 600
_TAG = re.compile(r"[^a-z0-9_-]+")


class ZendeskSink(Sink):
    """Lifecycle: the runtime calls `execute` (concurrently across records, in order within one)
    after `start()`, and `stop()` once at the end, which closes the HTTP client. Errors follow
    `client.classify_zendesk`: a 429 holds the command's narrowest lane (its ticket's, for a
    comment) for Retry-After while other tickets go on; 409/5xx/timeouts are retried; a 401 pauses
    the sink until the credential works; a 403 or 400 fails that command; a 422 is skippable; a
    missing ticket is an answer (RecordMissing), not a failure.

    Nothing is written twice when an answer is lost:

    - a thread's ticket carries the thread's `external_id` (and tag): before creating, the sink
      lists the tickets with it; the create itself carries the command's id as `Idempotency-Key`,
      so a retry within Zendesk's two hours is answered with the ticket the first attempt made;
    - a comment whose earlier attempt may have been stored (a 5xx, a timeout, the ledger's
      `attempted`) is looked for among the ticket's comments (the same text by threadlink's own
      user) before it is added again.
    """

    recovery_scan_limit = 1000
    unsure_limit = 10_000
    unsure_ttl_s = 7 * 24 * 3600.0

    def __init__(self, config: ZendeskConfig, ctx: ConnectorContext, client: ZendeskClient | None = None) -> None:
        self.config = config
        self.ctx = ctx
        self.client = client or ZendeskClient(config)
        self.own_user = OwnUser()
        self._unsure = RecentIds(max_items=self.unsure_limit, ttl_s=self.unsure_ttl_s)

    async def stop(self) -> None:
        await self.client.aclose()

    def lanes(self, command: Command) -> list[Lane]:
        """Every call takes the account's lane; a comment first takes its ticket's (Zendesk's
        per-ticket update limit), so a 429 on one ticket holds that ticket alone."""
        per_s = self.config.requests_per_minute / 60
        account = Lane("account", per_s, max(1, int(per_s)))
        if isinstance(command, AddComment):
            return [Lane(f"ticket:{command.record.key}", TICKET_UPDATES_PER_S, 30), account]
        return [account]

    def outcome_unknown(self, command_id: str) -> None:
        self._unsure.remember(command_id)

    async def execute(self, command: Command, envelope: Envelope[Command]) -> Effect:
        if isinstance(command, FetchRecord):
            return await self._fetch(command, envelope)
        if isinstance(command, AddComment):
            return await self._comment(command)
        if isinstance(command, CreateTicket):
            return await self._create(command)
        raise SkippableError(f"zendesk cannot {command.kind}")

    def _check(self, ref: RecordRef) -> None:
        if ref.system != self.ctx.name:
            raise SkippableError(f"record {ref.id} belongs to {ref.system!r}, not to connector {self.ctx.name!r}")

    def _created(self, key: str, *, recovered: bool) -> Effect:
        return Effect(
            created=RecordRef(system=self.ctx.name, key=key), url=self.config.ticket_url(key), recovered=recovered
        )

    # -- CreateTicket --------------------------------------------------------------------------

    async def _create(self, command: CreateTicket) -> Effect:
        external_id = thread_external_id(command.thread)
        for existing in await self.client.tickets_by_external_id(external_id):
            if existing.get("external_id") == external_id and zendesk_id(existing.get("id")):
                log.info("zendesk: %s already has ticket #%s", command.thread.id, existing["id"])
                return self._created(ticket_key(existing), recovered=True)
        ticket: dict[str, Any] = {
            "subject": ticket_subject(command.summary, command.thread),
            "comment": {
                "body": ticket_description(command.description, command.thread),
                "public": self.config.comment_public,
            },
            "external_id": external_id,
            "tags": ["threadlink", external_id],
        }
        project = command.project.strip()
        if zendesk_id(project):
            ticket["group_id"] = int(project)  # Escalate's "project" of a Zendesk account: a group
        elif project:
            ticket["tags"].append(_TAG.sub("_", project.lower())[:80])
        created, replayed = await self.client.create_ticket(ticket, idempotency_key=command.command_id)
        if replayed:
            log.info("zendesk: ticket #%s of %s was made by an earlier attempt", created.get("id"), command.command_id)
        return self._created(ticket_key(created), recovered=replayed)

    # -- AddComment ----------------------------------------------------------------------------

    async def _comment(self, command: AddComment) -> Effect:
        self._check(command.record)
        key, command_id = command.record.key, command.command_id
        if not is_ticket_key(key):
            raise NotFoundError(f"zendesk: {key[:40]!r} is not a Zendesk ticket number")
        if not self.config.comment_backlinks:
            return Effect(skipped="comment_backlinks disabled")
        body = backlink_comment(command.thread, permalink=command.permalink, text=command.body)
        if self._unsure.seen(command_id):
            found = await self._find_comment(key, body)
            if found is not None:
                log.info("zendesk: the comment of %s on #%s was stored despite the failed attempt", command_id, key)
                return Effect(comment_id=found, recovered=True)
        try:
            answer = await self.client.add_comment(key, body, public=self.config.comment_public)
        except RetriableError as exc:
            if outcome_unknown(exc):
                self._unsure.remember(command_id)
            raise
        return Effect(comment_id=_comment_id(answer))

    async def _find_comment(self, key: str, body: str) -> str | None:
        """The id of the comment on `key` with exactly `body`, by threadlink's own user. A lookup
        that fails for good is logged and the comment added: a double is better than a loss."""
        try:
            if self.own_user.id is None:
                await self.own_user.learn(self.client, self.ctx.name)
            async with aclosing(self.client.comments(key, limit=self.recovery_scan_limit)) as comments:
                async for comment in comments:
                    author = zendesk_id(comment.get("author_id"))
                    if comment.get("body") == body and author is not None and author == self.own_user.id:
                        return zendesk_id(comment.get("id"))
        except RetriableError:
            raise
        except ConnectorError as exc:
            log.warning("zendesk: cannot look for an earlier comment on #%s (%s); adding it, perhaps twice", key, exc)
        return None

    # -- FetchRecord ---------------------------------------------------------------------------

    async def _fetch(self, command: FetchRecord, envelope: Envelope[Command]) -> Effect:
        self._check(command.record)
        try:
            ticket = await self.client.get_ticket(command.record.key)
        except NotFoundError:
            missing = RecordMissing(ref=command.record, reason="not found")
            await publish_looked_up(
                self.ctx, missing, events.RECORD_MISSING, command, envelope, visibility=self.config.default_visibility
            )
            return Effect(found=False)
        record = ticket_record(ticket, system=self.ctx.name, config=self.config)
        upserted = events.RECORD_UPSERTED.format(kind=record.kind)
        await publish_looked_up(self.ctx, record, upserted, command, envelope, visibility=record.visibility)
        return Effect(found=True, url=record.url)


def _comment_id(answer: dict[str, Any]) -> str | None:
    """The new comment's id: the `Comment` event of the update's audit."""
    audit = answer.get("audit")
    for event in audit.get("events") or [] if isinstance(audit, dict) else []:
        if isinstance(event, dict) and event.get("type") == "Comment":
            return zendesk_id(event.get("id"))
    return None
