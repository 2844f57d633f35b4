"""Commands for Jira: look an issue up (FetchRecord), post a back-link or a mirrored reply
(AddComment; a back-link also links the issue to the thread, a remote issue link), open a
thread's ticket (CreateTicket, find-before-create by the thread's label). Text is Markdown,
written as Atlassian Document Format (connectors.jira.adf)."""

from __future__ import annotations

import logging
from contextlib import aclosing

from connectors.base import ConnectorContext, Lane, Sink
from connectors.errors import (
    ConnectorError,
    FatalError,
    NotFoundError,
    RetriableError,
    SkippableError,
    outcome_unknown,
)
from connectors.jira.adf import markdown_to_adf
from connectors.jira.client import JiraClient
from connectors.jira.config import JiraConfig
from connectors.jira.mapping import (
    backlink_adf,
    backlink_command_id,
    backlink_property,
    project_of_key,
    remote_link,
    thread_label,
    ticket_from_issue,
)
from connectors.runtime.dedup import RecentIds
from connectors.runtime.lookups import publish_looked_up
from schemas import events
from schemas.commands import AddComment, Command, CreateTicket, FetchRecord
from schemas.envelope import Envelope
from schemas.outcomes import Effect
from schemas.records import RecordMissing, RecordRef

log = logging.getLogger(__name__)

#: The issue property a ticket threadlink opened records its thread in.
ISSUE_PROPERTY = "threadlink"


class JiraSink(Sink):
    """Lifecycle: the runtime calls `execute` for commands (concurrently across records, in
    order within one) after `start()`, and
    `stop()` once at the end, which closes the HTTP client. Errors follow connectors.errors:
    429/5xx/timeouts are retried by the runtime, 401/403 are fatal, a missing issue is an
    answer (RecordMissing), not a failure.

    Back-link comments are posted once even when an earlier attempt may have stored one: each
    comment carries its command id as an entity property, and before posting such a command
    again the sink looks for a comment with that id among the issue's newest
    `recovery_scan_limit` comments and answers with it (`Effect(recovered=True)`). An earlier
    attempt may have stored it when

    - an attempt in this process failed after Jira may have acted (a 5xx, a timeout:
      `connectors.errors.outcome_unknown`) and the runtime retries the command: the sink
      remembers those ids itself, in memory (at most `unsure_limit`, oldest go first);
    - the ledger holds the command as `attempted` but not done (a crash, a restart, another
      instance took the partition over, a dead-letter replay): the runtime, in whichever
      process handles it next, calls `outcome_unknown(command_id)` before executing it.

    The first attempt of a command posts without looking. When the lookup fails for good (a
    403, ...), the comment is posted all the same, as the Slack sink does with its cards.
    """

    #: How many of an issue's newest comments are searched for a back-link whose posting ended
    #: ambiguously. Past that, the comment is posted again: a double is better than a loss.
    recovery_scan_limit = 1000
    #: How many command ids whose posting ended ambiguously are remembered.
    unsure_limit = 10_000
    #: How long they are remembered: well past the runtime's retries, for dead-letter replays.
    unsure_ttl_s = 7 * 24 * 3600.0

    def __init__(self, config: JiraConfig, ctx: ConnectorContext, client: JiraClient | None = None) -> None:
        self.config = config
        self.ctx = ctx
        self.client = client or JiraClient(config)
        self._unsure = RecentIds(max_items=self.unsure_limit, ttl_s=self.unsure_ttl_s)

    async def stop(self) -> None:
        await self.client.aclose()

    def lanes(self, command: Command) -> list[Lane]:
        """Every call shares the account's lane; a comment also takes its issue's."""
        account = Lane("account", self.config.requests_per_s, max(1, int(self.config.requests_per_s)))
        if isinstance(command, AddComment):
            return [Lane(f"issue:{command.record.key}", self.config.writes_per_issue_per_s, 3), account]
        return [account]

    def outcome_unknown(self, command_id: str) -> None:
        """Called by the runtime for a command the ledger holds as attempted but not done:
        look for its back-link before posting it again."""
        self._unsure.remember(command_id)

    async def execute(self, command: Command, envelope: Envelope[Command]) -> Effect:
        if isinstance(command, FetchRecord):
            return await self._fetch(command, envelope)
        if isinstance(command, AddComment):
            return await self._comment(command)
        if isinstance(command, CreateTicket):
            return await self._create(command)
        raise SkippableError(f"jira cannot {command.kind}")

    async def _create(self, command: CreateTicket) -> Effect:
        """Find-before-create: the thread's label names the ticket already opened for it (by an
        attempt whose answer was lost, or before a restart), so a thread gets one ticket. The
        ticket also records its thread in an issue property (`threadlink`), for people and
        tools reading the issue; the search goes by the label because Jira's JQL sees entity
        properties only where an app's descriptor indexes them, which a REST client cannot."""
        label = thread_label(command.thread)
        found = await self.client.search(f'labels = "{label}" ORDER BY created ASC', fields=["summary"], max_results=1)
        issues = found.get("issues") if isinstance(found, dict) else None
        if isinstance(issues, list) and issues and isinstance(issues[0], dict) and issues[0].get("key"):
            existing = str(issues[0]["key"])
            log.info("jira: %s already has ticket %s", command.thread.id, existing)
            return Effect(
                created=RecordRef(system=self.ctx.name, key=existing), url=self._browse(existing), recovered=True
            )
        fields = {
            "project": {"key": command.project},
            "summary": " ".join(command.summary.split())[:250] or "Thread from " + command.thread.platform,
            "issuetype": {"name": self.config.issue_type},
            # The transcript is chat text: Markdown-ish, a newline meant as a line break.
            "description": markdown_to_adf(command.description, breaks=True),
            "labels": ["threadlink", label],
        }
        # A refusal (400: no such project or issue type) is fatal: the outcome says why, and the
        # thread hears it. A lost answer is retried, and the search above finds what it made.
        thread = command.thread
        recorded = {
            ISSUE_PROPERTY: {
                "thread": thread.id,
                "platform": thread.platform,
                "workspace": thread.workspace,
                "channel": thread.channel,
                "command_id": command.command_id,
            }
        }
        created = (await self.client.create_issue(fields, properties=recorded)).get("key")
        if not isinstance(created, str) or not created:
            raise SkippableError("jira POST issue answered without the new issue's key")
        return Effect(created=RecordRef(system=self.ctx.name, key=created), url=self._browse(created))

    def _browse(self, key: str) -> str:
        return f"{self.config.base_url.rstrip('/')}/browse/{key}"

    def _check_system(self, ref: RecordRef) -> None:
        if ref.system != self.ctx.name:
            raise SkippableError(f"record {ref.id} belongs to {ref.system!r}, not to connector {self.ctx.name!r}")

    async def _fetch(self, command: FetchRecord, envelope: Envelope[Command]) -> Effect:
        self._check_system(command.record)
        try:
            issue = await self.client.get_issue(command.record.key)
        except NotFoundError:
            missing = RecordMissing(ref=command.record, reason="not found")
            visibility = self.config.visibility_of(project_of_key(command.record.key))
            await publish_looked_up(self.ctx, missing, events.RECORD_MISSING, command, envelope, visibility=visibility)
            return Effect(found=False)
        record = ticket_from_issue(issue, system=self.ctx.name, config=self.config)
        upserted = events.RECORD_UPSERTED.format(kind=record.kind)
        await publish_looked_up(self.ctx, record, upserted, command, envelope, visibility=record.visibility)
        if record.ref.key != command.record.key:
            # Jira answers a moved or differently-cased key with the issue it is now; links wait
            # under the key that was asked for, so the record is published under that one too.
            alias = record.model_copy(update={"ref": command.record})
            await publish_looked_up(
                self.ctx, alias, upserted, command, envelope, visibility=record.visibility, id_suffix=":requested"
            )
        return Effect(found=True, url=record.url)

    async def _comment(self, command: AddComment) -> Effect:
        self._check_system(command.record)
        if not self.config.comment_backlinks:
            return Effect(skipped="comment_backlinks disabled")
        key, command_id = command.record.key, command.command_id
        if self.config.remote_links:
            # First, so that a retry after a failed link does not post the comment twice; the
            # link itself is an upsert (same globalId: updated), safe to repeat.
            await self._link_thread(key, command)
        if self._unsure.seen(command_id):
            found = await self._find_backlink(key, command_id)
            if found is not None:
                log.info("jira: back-link %s for %s was stored despite the failed attempt", found, command_id)
                return Effect(comment_id=found, recovered=True)
        body = backlink_adf(command.thread, permalink=command.permalink, text=command.body)
        try:
            comment = await self.client.add_comment(key, body, properties=backlink_property(command_id))
        except RetriableError as exc:
            if outcome_unknown(exc):
                self._unsure.remember(command_id)
            raise
        comment_id = comment.get("id")
        if comment_id in (None, ""):
            raise FatalError("jira POST comment: answer without a comment id")
        return Effect(comment_id=str(comment_id))

    async def _link_thread(self, key: str, command: AddComment) -> None:
        """Link the issue to the thread it is discussed in (a remote issue link). A retriable
        failure is raised (the command is tried again), and so are refused credentials (401);
        a link Jira refuses for good otherwise (403 without the Link issues permission, issue
        linking switched off) is logged: the comment still goes out."""
        link = remote_link(command.thread, permalink=command.permalink, text=command.body)
        if link is None:
            return  # no thread to link to, or no address of it (a private place)
        try:
            await self.client.put_remote_link(key, link)
        except RetriableError:
            raise
        except ConnectorError as exc:
            if exc.status == 401:
                raise  # the credentials, not the link: the connector stops and says so
            log.warning(
                "jira: cannot link %s to its thread (%s); set remote_links: false where the account may not "
                "link issues",
                key,
                exc,
            )

    async def _find_backlink(self, key: str, command_id: str) -> str | None:
        """The id of the comment on `key` tagged with `command_id`, among its newest ones.

        A retriable failure of the lookup is raised: the command stays remembered, and the
        next attempt looks again. One Jira refuses for good (a 403 without the Browse projects
        permission, ...) is logged and the comment posted: a double is better than a loss."""
        try:
            async with aclosing(self.client.recent_comments(key, limit=self.recovery_scan_limit)) as comments:
                async for comment in comments:
                    if backlink_command_id(comment) == command_id and comment.get("id") not in (None, ""):
                        return str(comment["id"])
        except RetriableError:
            raise
        except ConnectorError as exc:
            log.warning(
                "jira: cannot look for the back-link of %s on %s that a failed attempt may have stored (%s); "
                "posting it, perhaps twice. The lookup needs the Browse projects permission.",
                command_id,
                key,
                exc,
            )
        return None
