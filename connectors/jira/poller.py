"""Polls Jira for issues updated since a cursor the runtime checkpoints in Kafka: the fallback
for sites whose webhooks cannot reach threadlink, and the catch-up for deliveries Jira gave up on.

`POST /rest/api/3/search` with `<jql> AND updated >= "<yyyy/MM/dd HH:mm>" ORDER BY updated ASC,
key ASC`, `startAt` paging, at most `max_pages_per_poll` pages a poll. JQL compares dates to the
minute, in the time zone of the account's profile (learned with `GET myself`), so a poll asks
from the cursor's minute and skips what it already published: issues updated before the
cursor, and those at the cursor itself that it lists in `seen`. A poll that read its pages
without getting past the cursor (more issues changed in one minute than a poll reads) keeps
`offset`, where the next goes on.

The cursor is `{"since_ms": <newest updated time published, epoch ms>, "seen": {<key>: <ms>}}`.
Each issue found becomes a TicketRecord; its comments written or edited since the cursor (the
search's `comment` field) become RecordComments. Event ids are `<connector>:issue:<key>:<ms>`
and `<connector>:comment:<id>:<ms>`; an issue or comment that also came by webhook has the same
version, so the flows see nothing new in the second copy. Deletions are not seen by polling.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.base import ConnectorContext, Cursor, PollingSource, PollResult
from connectors.errors import ConnectorError, SkippableError
from connectors.jira.client import JiraClient
from connectors.jira.config import JiraConfig, JiraPolling
from connectors.jira.mapping import comment_from_webhook, ticket_from_issue
from connectors.runtime.deadletter import dead_letter_envelope
from connectors.runtime.listing import UpdatedSince, polled_event
from connectors.runtime.metrics import DEAD_LETTERS
from connectors.runtime.shopfloor import source_dead_letter
from schemas import events
from schemas.envelope import Envelope
from schemas.records import TicketRecord, version_of

log = logging.getLogger(__name__)

#: How much of an unmappable issue or comment a dead letter keeps.
MAX_DEAD_LETTER_CHARS = 64 * 1024


def read_cursor(cursor: Cursor) -> tuple[int | None, dict[str, int], int]:
    """(since_ms, seen, offset) of a checkpointed cursor; (None, {}, 0) for none or another shape."""
    if not isinstance(cursor, dict) or not isinstance(cursor.get("since_ms"), int):
        return None, {}, 0
    seen = cursor.get("seen")
    seen = {str(k): v for k, v in seen.items() if isinstance(v, int)} if isinstance(seen, dict) else {}
    offset = cursor.get("offset", 0)
    return cursor["since_ms"], seen, offset if isinstance(offset, int) and offset >= 0 else 0


def jql_minute(epoch_ms: int, zone: ZoneInfo) -> str:
    """The minute of `epoch_ms` as JQL writes dates, in the account's time zone."""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=zone).strftime("%Y/%m/%d %H:%M")


def updated_since_jql(condition: str, epoch_ms: int, zone: ZoneInfo) -> str:
    since = f'updated >= "{jql_minute(epoch_ms, zone)}"'
    where = f"({condition}) AND {since}" if condition else since
    return f"{where} ORDER BY updated ASC, key ASC"


class JiraIssuesPoller(PollingSource):
    """All issues the JQL condition selects. `start()` learns the account (its comments are
    threadlink's own) and its time zone (JQL's dates are in it)."""

    name = "issues"

    def __init__(self, config: JiraConfig, ctx: ConnectorContext, *, client: JiraClient | None = None) -> None:
        assert config.polling is not None
        self.config = config
        self.polling: JiraPolling = config.polling
        self.ctx = ctx
        self.interval_s = self.polling.interval_s
        since = self.polling.since
        self.initial_cursor = (
            {"since_ms": int(since.astimezone(UTC).timestamp() * 1000), "seen": {}} if since is not None else None
        )
        self._client = client
        self.own_account_id: str | None = None
        self.zone = ZoneInfo("UTC")

    @property
    def client(self) -> JiraClient:
        if self._client is None:
            self._client = JiraClient(self.config)
        return self._client

    async def start(self) -> None:
        try:
            me = await self.client.myself()
        except ConnectorError as exc:
            log.warning("jira: cannot learn threadlink's account (%s); polling reads dates as UTC", exc)
            return
        account_id, zone = me.get("accountId"), me.get("timeZone")
        self.own_account_id = account_id if isinstance(account_id, str) else None
        if isinstance(zone, str):
            try:
                self.zone = ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                log.warning("jira: unknown time zone %r of threadlink's account; polling reads dates as UTC", zone)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def poll(self, cursor: Cursor) -> PollResult:
        since, seen, offset = read_cursor(cursor)
        if since is None:  # no checkpoint and no `since`: from now on
            return PollResult(cursor={"since_ms": int(time.time() * 1000), "seen": {}})
        jql = updated_since_jql(self.polling.jql, since, self.zone)
        found: list[tuple[str, str, Envelope[Any]]] = []
        progress = UpdatedSince(since, seen, field="since_ms")
        more = False
        for _ in range(self.polling.max_pages_per_poll):
            page = await self.client.search(
                jql, fields=[*self.client.issue_fields, "comment"], max_results=self.polling.page_size, start_at=offset
            )
            issues = [i for i in page.get("issues") or [] if isinstance(i, dict)]
            for issue in issues:
                try:
                    record = ticket_from_issue(issue, system=self.ctx.name, config=self.config)
                except SkippableError as exc:  # never a record: on record as a dead letter, passed by
                    found.append(self._dead_letter(issue, str(exc)))
                    continue
                key, version = record.ref.key, record.version
                if version < since or progress.already_published(key, version):
                    continue  # before the cursor (in its minute), or published by an earlier poll
                found += self._issue_events(issue, record, since)
                progress.published(key, version)
            offset += len(issues)
            total = page.get("total")
            more = bool(issues) and isinstance(total, int) and offset < total
            if not more:
                break
        return PollResult(events=found, cursor=progress.cursor(more=more, offset=offset), more=more)

    def _issue_events(
        self, issue: dict[str, Any], record: TicketRecord, since: int
    ) -> list[tuple[str, str, Envelope[Any]]]:
        kind = events.RECORD_UPSERTED.format(kind=record.kind)
        event_id = f"issue:{record.ref.key}:{record.version}"
        out = [polled_event(self.ctx.name, self.ctx.topics.records, record, kind, event_id, record.updated_at)]
        listing = (issue.get("fields") or {}).get("comment")
        comments = listing.get("comments") if isinstance(listing, dict) else None
        for comment in comments if isinstance(comments, list) else []:
            try:
                mapped = comment_from_webhook(
                    {"issue": issue, "comment": comment},
                    system=self.ctx.name,
                    project_visibility=self.config.visibility_of(record.project),
                    own_account_id=self.own_account_id,
                    own_email=self.config.email,
                )
            except SkippableError as exc:
                out.append(self._dead_letter(comment, f"a comment of {record.ref.key}: {exc}"))
                continue
            if mapped.version < since:
                continue
            if mapped.version > version_of(mapped.created_at):  # written before, edited since
                mapped = mapped.model_copy(update={"action": "edited"})
            kind = events.RECORD_COMMENT.format(action=mapped.action)
            event_id = f"comment:{mapped.comment_id}:{mapped.version}"
            topic = self.ctx.topics.record_comments
            out.append(polled_event(self.ctx.name, topic, mapped, kind, event_id, mapped.created_at))
        return out

    def _dead_letter(self, item: Any, reason: str) -> tuple[str, str, Envelope[Any]]:
        """What a poll cannot map, published in its transaction: the cursor moves past it and the
        reason is on record (`threadlink dlq list`)."""
        key = str(item.get("key") or item.get("id") or "?") if isinstance(item, dict) else "?"
        log.warning("jira %s poll: dead-lettered %s: %s", self.ctx.name, key[:40], reason)
        letter = source_dead_letter(
            topic=f"jira:{self.ctx.name}",
            key=key[:200],
            payload=json.dumps(item, default=str)[:MAX_DEAD_LETTER_CHARS].encode(),
            reason=reason[:300],
            consumer=f"{self.ctx.name}/{self.name}",
        )
        DEAD_LETTERS.labels(letter.consumer, letter.error_kind).inc()
        return self.ctx.topics.dead_letters, letter.key or "", dead_letter_envelope(letter)
