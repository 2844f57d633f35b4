"""Commands for Redmine: look an issue up (FetchRecord), add a back-link note (AddComment), open
a thread's ticket (CreateTicket, find-before-create by the marker at the end of its subject)."""

from __future__ import annotations

import logging

from connectors.base import ConnectorContext, Lane, Sink
from connectors.errors import ConnectorError, NotFoundError, RetriableError, SkippableError, outcome_unknown
from connectors.redmine.client import RedmineClient, is_issue_id
from connectors.redmine.config import RedmineConfig
from connectors.redmine.mapping import backlink_note, thread_marker, ticket_from_issue, ticket_subject
from connectors.runtime.dedup import RecentIds
from schemas import events
from schemas.commands import AddComment, Command, CreateTicket, FetchRecord
from schemas.envelope import Envelope
from schemas.outcomes import Effect
from schemas.records import RecordEvent, RecordMissing, RecordRef, TicketRecord
from schemas.visibility import Visibility

log = logging.getLogger(__name__)


class RedmineSink(Sink):
    """Lifecycle: the runtime calls `execute` (concurrently across records, in order within one)
    after `start()`, and `stop()` once at the end, which closes the HTTP client. Errors follow
    connectors.errors: 429/5xx/timeouts are retried by the runtime, 401/403 pause the sink, a 422
    is skippable (dead-lettered with Redmine's reasons), a missing issue is an answer
    (RecordMissing), not a failure.

    A note whose earlier attempt may have been stored (a 5xx or a timeout after sending, or a
    command the ledger holds as attempted) is looked for first among the issue's journals (the
    same text, by threadlink's own user) and not added again. Redmine's `PUT` answers 204
    without the journal's id, so a note's Effect has no `comment_id`.
    """

    unsure_limit = 10_000
    unsure_ttl_s = 7 * 24 * 3600.0

    def __init__(self, config: RedmineConfig, ctx: ConnectorContext, client: RedmineClient | None = None) -> None:
        self.config = config
        self.ctx = ctx
        self.client = client or RedmineClient(config)
        self._unsure = RecentIds(max_items=self.unsure_limit, ttl_s=self.unsure_ttl_s)

    async def stop(self) -> None:
        await self.client.aclose()

    def lanes(self, command: Command) -> list[Lane]:
        return [Lane("account", self.config.requests_per_s, max(1, int(self.config.requests_per_s)))]

    def outcome_unknown(self, command_id: str) -> None:
        self._unsure.remember(command_id)

    async def execute(self, command: Command, envelope: Envelope[Command]) -> Effect:
        if isinstance(command, FetchRecord):
            return await self._fetch(command, envelope)
        if isinstance(command, AddComment):
            return await self._comment(command)
        if isinstance(command, CreateTicket):
            return await self._create(command)
        raise SkippableError(f"redmine cannot {command.kind}")

    def _check(self, ref: RecordRef) -> None:
        if ref.system != self.ctx.name:
            raise SkippableError(f"record {ref.id} belongs to {ref.system!r}, not to connector {self.ctx.name!r}")

    def _created(self, key: str, *, recovered: bool = False) -> Effect:
        ref = RecordRef(system=self.ctx.name, key=key)
        return Effect(created=ref, url=self.config.issue_url(key), recovered=recovered)

    async def _create(self, command: CreateTicket) -> Effect:
        """Find-before-create: the marker at the end of the subject names the ticket already
        opened for the thread (by an attempt whose answer was lost, or before a restart)."""
        marker = thread_marker(command.thread)
        try:
            found = await self.client.find_by_subject(marker, project=command.project)
        except NotFoundError:
            raise SkippableError(
                f"redmine: no project {command.project!r}, or threadlink's user is not a member of it"
            ) from None
        for issue in found:
            if isinstance(issue.get("id"), int) and marker in str(issue.get("subject", "")):
                log.info("redmine: %s already has ticket #%s", command.thread.id, issue["id"])
                return self._created(str(issue["id"]), recovered=True)
        fields: dict[str, object] = {
            "project_id": command.project,
            "subject": ticket_subject(command.summary, command.thread),
            "description": command.description,
        }
        if self.config.tracker_id is not None:
            fields["tracker_id"] = self.config.tracker_id
        created = await self.client.create_issue(fields)
        return self._created(str(created["id"]))

    async def _comment(self, command: AddComment) -> Effect:
        self._check(command.record)
        if not self.config.comment_backlinks:
            return Effect(skipped="comment_backlinks disabled")
        key, command_id = command.record.key, command.command_id
        note = backlink_note(command.thread, permalink=command.permalink, text=command.body)
        if self._unsure.seen(command_id) and await self._note_exists(key, note):
            log.info("redmine: the note of %s on #%s was stored despite the failed attempt", command_id, key)
            return Effect(recovered=True)
        try:
            await self.client.add_note(key, note)
        except RetriableError as exc:
            if outcome_unknown(exc):
                self._unsure.remember(command_id)
            raise
        return Effect()

    async def _note_exists(self, key: str, note: str) -> bool:
        """Whether threadlink's user already wrote exactly this note on the issue. A lookup that
        fails for good is logged and the note added: a double is better than a loss."""
        try:
            me = (await self.client.current_user()).get("id")
            issue = await self.client.get_issue(key, journals=True)
        except RetriableError:
            raise
        except ConnectorError as exc:
            log.warning("redmine: cannot look for an earlier note on #%s (%s); adding it, perhaps twice", key, exc)
            return False
        journals = issue.get("journals")
        if not isinstance(journals, list):
            return False
        return any(
            isinstance(j, dict) and j.get("notes") == note and (j.get("user") or {}).get("id") == me for j in journals
        )

    async def _fetch(self, command: FetchRecord, envelope: Envelope[Command]) -> Effect:
        self._check(command.record)
        try:
            if not is_issue_id(command.record.key):
                raise NotFoundError(f"{command.record.key!r} is not a Redmine issue number")
            issue = await self.client.get_issue(command.record.key)
        except NotFoundError:
            missing = RecordMissing(ref=command.record, reason="not found")
            await self._publish(missing, events.RECORD_MISSING, command, envelope, self.config.default_visibility)
            return Effect(found=False)
        record = ticket_from_issue(issue, system=self.ctx.name, config=self.config)
        await self._publish(
            record, events.RECORD_UPSERTED.format(kind=record.kind), command, envelope, record.visibility
        )
        return Effect(found=True, url=record.url)

    async def _publish(
        self,
        data: TicketRecord | RecordMissing,
        type: str,
        command: Command,
        envelope: Envelope[Command],
        visibility: Visibility,
    ) -> None:
        published = Envelope[RecordEvent].wrap(
            data,
            type=type,
            source_system=self.ctx.name,
            subject=data.ref.id,
            id=f"{self.ctx.name}:{command.command_id}",  # a redelivered command publishes the same event
            visibility=visibility,
            parent_traceparent=envelope.traceparent,
        )
        await self.ctx.publisher.publish(self.ctx.topics.records, data.ref.id, published)
