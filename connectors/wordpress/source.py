"""Polls WordPress for posts (or pages) modified since a cursor the runtime checkpoints in Kafka.

`GET /wp/v2/<type>?modified_after=<UTC time>&orderby=modified&order=asc&status=publish,future,
draft,pending,private,trash&context=edit&per_page=N`: every status, oldest change first, at most
`max_pages_per_poll` pages a poll. Each post becomes an ArticleRecord (its category and tag ids
resolved to names: at most `max_term_lookups` a poll, cached for the poll); a trashed one a
RecordMissing; one that cannot be mapped (no id, no time, a record that does not validate) a dead
letter with the reason, in the poll's transaction, so one bad post never stops the others.

The cursor is `{"since": <modified_gmt of the newest post published>, "seen": {<id>: <modified_gmt>}}`
(the posts of that second already published), plus `"rejected"`: digests of the last 100 items
without a usable time, dead-lettered once though every listing returns them. WordPress's
`modified_after` is exclusive and has whole seconds, so each page asks from one second before
`since` and skips what is in `seen`.
Pages are keyset pages, not page numbers: each asks again from the newest post seen so far, so a
post edited during a poll moves to the end of the listing without shifting others past the cursor.

WordPress orders posts of the same second in no fixed way (MariaDB with ties and a LIMIT), so
when one second holds more posts than a page, its rest is read by id with that second as both
bounds and what was published excluded; once a page of it is not full, that second is done and
the cursor moves one second on.

Event ids are `<connector>:post:<id>:<modified_gmt>`, so a post published twice (a zombie's
aborted transaction aside) is recognisable downstream.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from connectors.base import ConnectorContext, Cursor, PollingSource, PollResult
from connectors.errors import SkippableError
from connectors.runtime.deadletter import dead_letter_envelope
from connectors.runtime.metrics import DEAD_LETTERS
from connectors.runtime.shopfloor import source_dead_letter
from connectors.wordpress.client import WordPressClient
from connectors.wordpress.config import PostType, WordPressConfig
from connectors.wordpress.mapping import article_from_post, gmt_time, post_key, term_ids
from schemas import events
from schemas.envelope import Envelope
from schemas.records import RecordEvent, RecordMissing, RecordRef, version_of

log = logging.getLogger(__name__)

TAXONOMIES = ("categories", "tags")
#: What a dead letter keeps of a post that could not be mapped.
MAX_DEAD_LETTER_CHARS = 64 * 1024
WP_TIME = "%Y-%m-%dT%H:%M:%S"
#: Posts of one second excluded by id at most (they travel in the URL: 1000 ids are ~7 KB).
MAX_EXCLUDED = 1000
#: Items without a usable time the cursor remembers having dead-lettered (the newest).
MAX_REJECTED = 100

Event = tuple[str, str, Envelope[Any]]


def wp_time(moment: datetime) -> str:
    """The form of WordPress's `*_gmt` fields and of `modified_after`: seconds, no zone."""
    return moment.strftime(WP_TIME)


def read_cursor(cursor: Cursor) -> tuple[str | None, dict[str, str]]:
    """(since, seen) of a checkpointed cursor; (None, {}) for none or one of another shape."""
    if not isinstance(cursor, dict) or gmt_time(cursor.get("since")) is None:
        return None, {}
    seen = cursor.get("seen")
    return str(cursor["since"]), {str(k): str(v) for k, v in seen.items()} if isinstance(seen, dict) else {}


def rejected_of(cursor: Cursor) -> list[str]:
    rejected = cursor.get("rejected") if isinstance(cursor, dict) else None
    return [str(r) for r in rejected][-MAX_REJECTED:] if isinstance(rejected, list) else []


@dataclass
class _Progress:
    """Where one poll has got to: the newest second published and the posts of it."""

    newest: str
    seen: dict[str, str]
    rejected: list[str] = field(default_factory=list)
    """Digests of items without a usable time already dead-lettered (they come back in every listing)."""
    events: list[Event] = field(default_factory=list)

    @property
    def anchor(self) -> datetime:
        moment = gmt_time(self.newest)
        assert moment is not None  # read_cursor and _take keep only parseable times
        return moment


class WordPressPoller(PollingSource):
    """The posts or the pages of one site (`kind`). Lifecycle: see `PollingSource`; `stop()`
    closes the HTTP client."""

    def __init__(
        self, config: WordPressConfig, ctx: ConnectorContext, *, kind: PostType, client: WordPressClient | None = None
    ) -> None:
        self.config = config
        self.ctx = ctx
        self.kind = kind
        self.name = kind
        self.interval_s = config.poll_interval_s
        self.initial_cursor = {"since": wp_time(config.since.astimezone(UTC)), "seen": {}} if config.since else None
        self._client = client

    @property
    def client(self) -> WordPressClient:
        if self._client is None:
            self._client = WordPressClient(self.config)
        return self._client

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def poll(self, cursor: Cursor) -> PollResult:
        since, seen = read_cursor(cursor)
        if since is None:
            # First poll without a checkpoint or `since`: from now on.
            return PollResult(cursor={"since": wp_time(datetime.now(UTC)), "seen": {}})
        progress = _Progress(since, dict(seen), rejected_of(cursor))
        terms: dict[int, str] = {}
        lookups = [self.config.max_term_lookups]
        size, more = self.config.page_size, False
        for _ in range(self.config.max_pages_per_poll):
            after = progress.anchor - timedelta(seconds=1)
            items = await self.client.modified_after(self.kind, after, per_page=size)
            fresh = await self._take(items, progress, terms, lookups)
            more = len(items) >= size
            if not more or fresh:
                if not more:
                    break
                continue
            # A full page of one second, all published: that second holds more than a page.
            # Its rest, by id (its order within a second is none), without what was published.
            exclude = sorted(int(k) for k in progress.seen if k.isdigit())[:MAX_EXCLUDED]
            second = progress.anchor
            rest = await self.client.modified_after(
                self.kind, after, before=second + timedelta(seconds=1), exclude=exclude, per_page=size, by_id=True
            )
            fresh = await self._take(rest, progress, terms, lookups)
            if len(rest) < size or not fresh:
                if len(rest) >= size:
                    log.warning(
                        "wordpress %s: more than %d %s changed in the second %s; the rest of it is skipped",
                        self.ctx.name, MAX_EXCLUDED, self.kind, progress.newest,
                    )  # fmt: skip
                if progress.anchor == second:  # that second is done: on after it
                    progress.newest, progress.seen = wp_time(second + timedelta(seconds=1)), {}
        next_cursor: dict[str, Any] = {"since": progress.newest, "seen": progress.seen}
        if progress.rejected:
            next_cursor["rejected"] = progress.rejected[-MAX_REJECTED:]
        return PollResult(events=progress.events, cursor=next_cursor, more=more)

    async def _take(self, items: list[Any], progress: _Progress, terms: dict[int, str], lookups: list[int]) -> bool:
        """Map what is new among `items` into `progress`; whether anything was."""
        fresh = False
        for post in items:
            raw = post.get("modified_gmt") if isinstance(post, dict) else None
            modified_at = gmt_time(raw)
            if modified_at is None:
                # No time to put it behind the cursor: remembered by content instead, so it is
                # dead-lettered once, not at every poll (a change to it is a new item).
                digest = hashlib.sha256(json.dumps(post, sort_keys=True, default=str).encode()).hexdigest()[:16]
                if digest not in progress.rejected:
                    progress.rejected.append(digest)
                    progress.events.append(self._dead_letter(post, "no modified_gmt time"))
                continue
            modified, key = wp_time(modified_at), str(post.get("id"))
            if modified < progress.newest or progress.seen.get(key) == modified:
                continue  # published by this poll or an earlier one, unchanged since
            progress.events += await self._events(post, terms, lookups)
            if modified > progress.newest:
                progress.newest, progress.seen = modified, {}
            progress.seen[key] = modified
            fresh = True
        return fresh

    async def _events(self, post: dict[str, Any], terms: dict[int, str], lookups: list[int]) -> list[Event]:
        try:
            key = post_key(post)
            if post.get("status") == "trash":
                return [self._missing(post, key)]
            await self._resolve_terms(post, terms, lookups)
            record = article_from_post(post, system=self.ctx.name, config=self.config, terms=terms)
        except (SkippableError, ValidationError, ValueError) as exc:
            return [self._dead_letter(post, str(exc).splitlines()[0][:300])]
        envelope = Envelope[RecordEvent].wrap(
            record,
            type=events.RECORD_UPSERTED.format(kind=record.kind),
            source_system=self.ctx.name,
            subject=record.ref.id,
            id=f"{self.ctx.name}:post:{key}:{post.get('modified_gmt')}",
            occurred_at=record.updated_at,
            visibility=record.visibility,
        )
        return [(self.ctx.topics.records, record.ref.id, envelope)]

    def _missing(self, post: dict[str, Any], key: str) -> Event:
        modified = gmt_time(post.get("modified_gmt"))
        missing = RecordMissing(
            ref=RecordRef(system=self.ctx.name, key=key), reason="trashed", version=version_of(modified)
        )
        envelope = Envelope[RecordEvent].wrap(
            missing,
            type=events.RECORD_MISSING,
            source_system=self.ctx.name,
            subject=missing.ref.id,
            id=f"{self.ctx.name}:post:{key}:{post.get('modified_gmt')}",
            occurred_at=modified,
            visibility=self.config.unpublished_visibility,
        )
        return self.ctx.topics.records, missing.ref.id, envelope

    async def _resolve_terms(self, post: dict[str, Any], terms: dict[int, str], lookups: list[int]) -> None:
        """Names of the post's categories and tags not known yet in this poll, while the poll's
        budget lasts (one call per taxonomy and post at most, 100 ids each)."""
        for taxonomy in TAXONOMIES:
            unknown = [i for i in term_ids(post, taxonomy) if i not in terms][: lookups[0]]
            if not unknown:
                continue
            lookups[0] -= len(unknown)
            terms.update(await self.client.term_names(taxonomy, unknown))

    def _dead_letter(self, post: Any, reason: str) -> Event:
        """A post that cannot become a record: published as a dead letter in the poll's
        transaction, so the cursor moves on past it and the reason is on record."""
        key = str(post.get("id")) if isinstance(post, dict) else "?"
        log.warning("wordpress %s: dead-lettered %s %s: %s", self.ctx.name, self.kind, key[:40], reason)
        payload = json.dumps(post, default=str)[:MAX_DEAD_LETTER_CHARS].encode()
        letter = source_dead_letter(
            topic=f"wordpress:{self.ctx.name}",
            key=key[:200],
            payload=payload,
            reason=f"{self.kind}: {reason}",
            consumer=f"{self.ctx.name}/{self.name}",
        )
        DEAD_LETTERS.labels(letter.consumer, letter.error_kind).inc()
        return self.ctx.topics.dead_letters, letter.key or "", dead_letter_envelope(letter)
