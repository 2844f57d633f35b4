"""Commands for GitHub: look an issue up (FetchRecord), post a back-link or a mirrored reply
(AddComment), open a thread's issue (CreateTicket, find-before-create by the thread's label and
marker)."""

from __future__ import annotations

import logging
from contextlib import aclosing

from connectors.base import ConnectorContext, Lane, Sink
from connectors.errors import ConnectorError, FatalError, NotFoundError, RetriableError, SkippableError, outcome_unknown
from connectors.github.client import GitHubClient
from connectors.github.config import GitHubConfig
from connectors.github.mapping import (
    IssueKey,
    backlink_markdown,
    is_repo_name,
    issue_body,
    issue_key,
    issue_title,
    marker_of,
    parse_issue_key,
    repo_from_issue,
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
from schemas.visibility import Visibility

log = logging.getLogger(__name__)


class GitHubSink(Sink):
    """Lifecycle: the runtime calls `execute` for commands (concurrently across records, in
    order within one) after `start()`, and `stop()` once at the end, which closes the HTTP
    client. Errors follow connectors.errors, with GitHub's rate limits as backpressure
    (`client.classify_github`): a 403 or 429 with `x-ratelimit-remaining: 0` or `Retry-After`
    holds the lane until the reset; a 401 is a refused credential, which pauses the sink; another
    403 (a repository the token may not write to) fails that command alone; a missing issue is
    an answer (RecordMissing), not a failure; a 410 or 422 is skippable, dead-lettered with the
    reason. Writes go only to repositories of `write_owners` (when set).

    Nothing is written twice when an answer is lost:

    - a thread's issue carries the thread's label and, in its body, the thread's marker (labels
      are dropped silently when the account has no push access); before creating, the sink looks
      for the label, then for the marker among the repository's `find_scan_limit` newest issues;
    - a back-link carries its command's marker; after an attempt whose outcome is unknown (a 5xx,
      a timeout, or the ledger's `attempted`: `outcome_unknown(command_id)`), the sink looks for
      it among the issue's first `recovery_scan_limit` comments before posting again.
    """

    #: How many of an issue's comments are searched for a back-link whose posting ended ambiguously.
    recovery_scan_limit = 1000
    unsure_limit = 10_000
    unsure_ttl_s = 7 * 24 * 3600.0

    def __init__(self, config: GitHubConfig, ctx: ConnectorContext, client: GitHubClient | None = None) -> None:
        self.config = config
        self.ctx = ctx
        self.client = client or GitHubClient(config)
        self._unsure = RecentIds(max_items=self.unsure_limit, ttl_s=self.unsure_ttl_s)

    async def stop(self) -> None:
        await self.client.aclose()

    def lanes(self, command: Command) -> list[Lane]:
        """Every call shares the token's lane; creating content also takes the writes lane
        (GitHub's secondary limit on content creation)."""
        account = Lane("account", self.config.requests_per_s, max(1, int(self.config.requests_per_s)))
        if isinstance(command, AddComment | CreateTicket):
            return [Lane("writes", self.config.writes_per_s, 5), account]
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
        raise SkippableError(f"github cannot {command.kind}")

    def _check_system(self, ref: RecordRef) -> IssueKey | None:
        if ref.system != self.ctx.name:
            raise SkippableError(f"record {ref.id} belongs to {ref.system!r}, not to connector {self.ctx.name!r}")
        return parse_issue_key(ref.key)

    # -- FetchRecord -------------------------------------------------------------------------

    async def _fetch(self, command: FetchRecord, envelope: Envelope[Command]) -> Effect:
        key = self._check_system(command.record)
        asked_repo = key.repo_name if key else None
        visibility = self.config.visibility_of(asked_repo)
        if key is None:
            return await self._missing(command, envelope, "not a GitHub issue key (owner/repo#number)", visibility)
        try:
            issue = await self.client.get_issue(key)
        except NotFoundError:
            return await self._missing(command, envelope, "not found", visibility)
        except SkippableError as exc:
            if exc.status != 410:
                raise
            return await self._missing(command, envelope, "gone", visibility)
        repo = repo_from_issue(issue) or key.repo_name
        record = ticket_from_issue(issue, repo=repo, system=self.ctx.name, config=self.config)
        upserted = events.RECORD_UPSERTED.format(kind=record.kind)
        await publish_looked_up(self.ctx, record, upserted, command, envelope, visibility=record.visibility)
        if record.ref.key != command.record.key:
            # A transferred issue (GitHub redirects to it) or a differently-cased key: links wait
            # under the key that was asked for, so the record is published under that one too.
            alias = record.model_copy(update={"ref": command.record})
            await publish_looked_up(
                self.ctx, alias, upserted, command, envelope, visibility=record.visibility, id_suffix=":requested"
            )
        return Effect(found=True, url=record.url)

    async def _missing(
        self, command: FetchRecord, envelope: Envelope[Command], reason: str, visibility: Visibility
    ) -> Effect:
        missing = RecordMissing(ref=command.record, reason=reason)
        await publish_looked_up(self.ctx, missing, events.RECORD_MISSING, command, envelope, visibility=visibility)
        return Effect(found=False)

    # -- CreateTicket ------------------------------------------------------------------------

    async def _create(self, command: CreateTicket) -> Effect:
        """Find-before-create: the thread's label (or marker) names the issue already opened for
        it (by an attempt whose answer was lost, or before a restart), so a thread gets one."""
        if not is_repo_name(command.project):
            raise FatalError(f"github: project {command.project[:100]!r} is not a repository (owner/repo)")
        owner, repo = command.project.lower().split("/")
        if not self.config.may_write(owner):
            raise FatalError(
                f"github: {owner!r} is not in write_owners; threadlink opens no issue in {command.project!r}"
            )
        label = thread_label(command.thread)
        existing = await self._find_thread_issue(owner, repo, label)
        if existing is not None:
            log.info("github: %s already has issue %s", command.thread.id, existing["key"])
            return Effect(
                created=RecordRef(system=self.ctx.name, key=existing["key"]), url=existing["url"], recovered=True
            )
        body = {
            "title": issue_title(command.summary, command.thread.platform),
            "body": issue_body(command.description, label=label),
            "labels": ["threadlink", label],
        }
        # A refusal (404: no such repository or no access; 410: issues turned off; 422) says why
        # in the outcome. A lost answer is retried, and the search above finds what it made.
        created = await self.client.create_issue(owner, repo, body)
        key = issue_key(repo_from_issue(created) or f"{owner}/{repo}", created)
        url = created.get("html_url")
        return Effect(created=RecordRef(system=self.ctx.name, key=key), url=url if isinstance(url, str) else None)

    async def _find_thread_issue(self, owner: str, repo: str, label: str) -> dict[str, str] | None:
        async with aclosing(self.client.issues(owner, repo, limit=1, labels=label, state="all")) as labelled:
            async for issue in labelled:
                return self._found(owner, repo, issue)
        if self.config.find_scan_limit == 0:
            return None
        newest = self.client.issues(
            owner, repo, limit=self.config.find_scan_limit, state="all", sort="created", direction="desc"
        )
        async with aclosing(newest) as issues:
            async for issue in issues:
                if marker_of(issue.get("body"), "thread") == label:
                    return self._found(owner, repo, issue)
        return None

    @staticmethod
    def _found(owner: str, repo: str, issue: dict[str, object]) -> dict[str, str]:
        url = issue.get("html_url")
        return {
            "key": issue_key(repo_from_issue(issue) or f"{owner}/{repo}", issue),
            "url": url if isinstance(url, str) else "",
        }

    # -- AddComment --------------------------------------------------------------------------

    async def _comment(self, command: AddComment) -> Effect:
        key = self._check_system(command.record)
        if key is None:
            raise NotFoundError(f"github: {command.record.key[:120]!r} is not a GitHub issue key (owner/repo#number)")
        if not self.config.comment_backlinks:
            return Effect(skipped="comment_backlinks disabled")
        if not self.config.may_write(key.owner):
            return Effect(skipped=f"{key.owner} is not in write_owners")
        command_id = command.command_id
        if self._unsure.seen(command_id):
            found = await self._find_backlink(key, command_id)
            if found is not None:
                log.info("github: back-link %s for %s was stored despite the failed attempt", found, command_id)
                return Effect(comment_id=found, recovered=True)
        body = backlink_markdown(command.thread, command_id=command_id, permalink=command.permalink, text=command.body)
        try:
            comment = await self.client.add_comment(key, body)
        except RetriableError as exc:
            if outcome_unknown(exc):
                self._unsure.remember(command_id)
            raise
        comment_id = comment.get("id")
        if comment_id in (None, "") or isinstance(comment_id, bool):
            raise FatalError("github POST comment: answer without a comment id")
        return Effect(comment_id=str(comment_id))

    async def _find_backlink(self, key: IssueKey, command_id: str) -> str | None:
        """The id of the comment on `key` carrying `command_id`'s marker. A retriable failure is
        raised (looked for again next time); a lasting one is logged and the comment posted:
        a double is better than a loss."""
        try:
            async with aclosing(self.client.comments(key, limit=self.recovery_scan_limit)) as comments:
                async for comment in comments:
                    if marker_of(comment.get("body"), "command") == command_id and comment.get("id") is not None:
                        return str(comment["id"])
        except RetriableError:
            raise
        except ConnectorError as exc:
            log.warning(
                "github: cannot look for the back-link of %s on %s (%s); posting it, perhaps twice",
                command_id,
                key,
                exc,
            )
        return None
