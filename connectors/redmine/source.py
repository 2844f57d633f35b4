"""Polls Redmine for issues updated since a cursor the runtime checkpoints in Kafka.

Redmine has no webhooks of its own, so changes are asked for:
`GET /issues.json?status_id=*&updated_on=>=<since>&sort=updated_on,id&limit=100&offset=...`,
oldest first, at most `max_pages_per_poll` pages a poll. Each issue found becomes a
TicketRecord; its journals with notes written since the cursor (`GET /issues/N.json?include=journals`)
become RecordComments.

The cursor is `{"since": <updated_on of the newest issue published>, "seen": {<id>: <updated_on>}}`
(connectors/runtime/listing.py): Redmine's filter has whole seconds and is inclusive, so the
next poll asks again from `since` and skips the issues of that second it already published.
Event ids are `<connector>:issue:<id>:<updated_on>` and `<connector>:journal:<id>`, so a
record published twice (a zombie's aborted transaction aside) is recognisable downstream.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from connectors.base import ConnectorContext, Cursor, PollingSource, PollResult
from connectors.errors import ConnectorError, FatalError, NotFoundError
from connectors.redmine.client import RedmineClient, redmine_time
from connectors.redmine.config import RedmineConfig
from connectors.redmine.mapping import comments_from_journals, issue_key, parse_redmine_time, ticket_from_issue
from connectors.runtime.listing import UpdatedSince, polled_event
from schemas import events
from schemas.envelope import Envelope

log = logging.getLogger(__name__)


def read_cursor(cursor: Cursor) -> tuple[str | None, dict[str, str]]:
    """(since, seen) of a checkpointed cursor; (None, {}) for none or one of another shape."""
    if not isinstance(cursor, dict) or not isinstance(cursor.get("since"), str):
        return None, {}
    seen = cursor.get("seen")
    return cursor["since"], {str(k): str(v) for k, v in seen.items()} if isinstance(seen, dict) else {}


class RedmineIssuesPoller(PollingSource):
    """One project's issues (or every visible project's, with `project=None`). Lifecycle: see
    `PollingSource`; `start()` learns threadlink's own Redmine user (its notes are marked
    `by_threadlink`), `stop()` closes the HTTP client."""

    def __init__(
        self, config: RedmineConfig, ctx: ConnectorContext, *, project: str | None, client: RedmineClient | None = None
    ) -> None:
        self.config = config
        self.ctx = ctx
        self.project = project
        self.name = f"issues-{project}" if project else "issues"
        self.interval_s = config.poll_interval_s
        self.initial_cursor = (
            {"since": redmine_time(config.since.astimezone(UTC)), "seen": {}} if config.since else None
        )
        self._client = client
        self.own_user_id: int | None = None

    @property
    def client(self) -> RedmineClient:
        if self._client is None:
            self._client = RedmineClient(self.config)
        return self._client

    async def start(self) -> None:
        try:
            user = await self.client.current_user()
            self.own_user_id = user.get("id") if isinstance(user.get("id"), int) else None
        except ConnectorError as exc:
            log.warning("redmine: cannot learn threadlink's own user (%s); its notes are not recognised", exc)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def poll(self, cursor: Cursor) -> PollResult:
        since, seen = read_cursor(cursor)
        if since is None:
            # First poll without a checkpoint or `since`: from now on.
            return PollResult(cursor={"since": redmine_time(datetime.now(UTC)), "seen": {}})
        events_out: list[tuple[str, str, Envelope[Any]]] = []
        progress = UpdatedSince(since, seen, field="since")
        # Resumes the listing where a poll that got no further than `since` stopped (more issues
        # of one second than a poll reads); any progress in time starts the listing afresh.
        offset = cursor.get("offset", 0) if isinstance(cursor, dict) else 0
        offset = offset if isinstance(offset, int) and offset >= 0 else 0
        more = False
        for _ in range(self.config.max_pages_per_poll):
            try:
                page = await self.client.issues_updated_since(
                    since, project=self.project, offset=offset, limit=self.config.page_size
                )
            except NotFoundError:
                raise FatalError(
                    f"redmine: no project {self.project!r}, or threadlink's user is not a member of it; "
                    "check `projects` in the connector's config"
                ) from None
            issues = [i for i in page.get("issues") or [] if isinstance(i, dict)]
            for issue in issues:
                key, updated_on = issue_key(issue), str(issue.get("updated_on") or "")
                if progress.already_published(key, updated_on):
                    continue  # published by an earlier poll, unchanged since
                events_out += await self._issue_events(issue, since)
                progress.published(key, updated_on)
            offset += len(issues)
            total = page.get("total_count")
            more = bool(issues) and isinstance(total, int) and offset < total
            if not more:
                break
        return PollResult(events=events_out, cursor=progress.cursor(more=more, offset=offset), more=more)

    async def _issue_events(self, issue: dict[str, Any], since: str) -> list[tuple[str, str, Envelope[Any]]]:
        record = ticket_from_issue(issue, system=self.ctx.name, config=self.config, project=self.project)
        upserted = events.RECORD_UPSERTED.format(kind=record.kind)
        event_id = f"issue:{record.ref.key}:{issue.get('updated_on')}"
        out = [polled_event(self.ctx.name, self.ctx.topics.records, record, upserted, event_id, record.updated_at)]
        try:
            full = await self.client.get_issue(record.ref.key, journals=True)
        except NotFoundError:
            return out  # deleted (or hidden) between the listing and now: its record is what there is
        for comment in comments_from_journals(
            full,
            system=self.ctx.name,
            config=self.config,
            project=self.project,
            own_user_id=self.own_user_id,
            since=parse_redmine_time(since),
        ):
            kind = events.RECORD_COMMENT.format(action=comment.action)
            topic = self.ctx.topics.record_comments
            event_id = f"journal:{comment.comment_id}"
            out.append(polled_event(self.ctx.name, topic, comment, kind, event_id, comment.created_at))
        return out
