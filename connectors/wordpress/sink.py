"""Commands for WordPress: look a post or page up (FetchRecord), write a resolved thread's draft
post (DraftArticle, find-before-create by the thread's tag)."""

from __future__ import annotations

import logging
from typing import Any

from connectors.base import ConnectorContext, Lane, Sink
from connectors.errors import NotFoundError, SkippableError
from connectors.runtime.lookups import publish_looked_up
from connectors.wordpress.client import WordPressClient
from connectors.wordpress.config import WordPressConfig
from connectors.wordpress.mapping import article_from_post, draft_content, term_ids, thread_tag
from schemas import events
from schemas.commands import Command, DraftArticle, FetchRecord
from schemas.envelope import Envelope
from schemas.outcomes import Effect
from schemas.records import RecordMissing, RecordRef

log = logging.getLogger(__name__)


class WordPressSink(Sink):
    """Lifecycle: the runtime calls `execute` (concurrently across records, in order within one)
    after `start()`, and `stop()` once at the end, which closes the HTTP client. Errors follow
    connectors.errors and the client: 429/5xx/timeouts are retried by the runtime, a refused
    application password (401/403, or WordPress taking it for an anonymous visitor) pauses the
    sink, another 400 is skippable with WordPress's error code, a missing post is an answer
    (RecordMissing), not a failure.

    `DraftArticle` tags its draft `threadlink-thread-<hash of the thread id>` and looks for a
    post with that tag first (any status but trash), so a retry after a lost answer, a restart
    or a second command for the same thread finds the draft instead of writing another.
    """

    def __init__(self, config: WordPressConfig, ctx: ConnectorContext, client: WordPressClient | None = None) -> None:
        self.config = config
        self.ctx = ctx
        self.client = client or WordPressClient(config)

    async def stop(self) -> None:
        await self.client.aclose()

    def lanes(self, command: Command) -> list[Lane]:
        return [Lane("site", self.config.requests_per_s, max(1, int(self.config.requests_per_s)))]

    async def execute(self, command: Command, envelope: Envelope[Command]) -> Effect:
        if isinstance(command, FetchRecord):
            return await self._fetch(command, envelope)
        if isinstance(command, DraftArticle):
            return await self._draft(command)
        raise SkippableError(f"wordpress cannot {command.kind}")

    def _created(self, post: dict[str, Any], *, recovered: bool = False) -> Effect:
        key = str(post["id"])
        link = post.get("link")
        url = link if isinstance(link, str) and link.startswith(("https://", "http://")) else self.config.post_url(key)
        return Effect(created=RecordRef(system=self.ctx.name, key=key), url=url, recovered=recovered)

    async def _draft(self, command: DraftArticle) -> Effect:
        tag = thread_tag(command.thread)
        tag_id = await self.client.tag_id(tag)
        if tag_id is not None:
            for post in await self.client.posts_tagged(tag_id):
                if type(post.get("id")) is int:
                    log.info("wordpress: %s already has draft %s", command.thread.id, post["id"])
                    return self._created(post, recovered=True)
        else:
            tag_id = await self.client.create_tag(tag)
        fields: dict[str, Any] = {
            "title": command.title,
            "content": draft_content(command.body, permalink=command.permalink),
            "status": "draft",
            "tags": [tag_id],
        }
        if self.config.draft_category is not None:
            fields["categories"] = [self.config.draft_category]
        return self._created(await self.client.create_post(fields))

    async def _fetch(self, command: FetchRecord, envelope: Envelope[Command]) -> Effect:
        ref = command.record
        if ref.system != self.ctx.name:
            raise SkippableError(f"record {ref.id} belongs to {ref.system!r}, not to connector {self.ctx.name!r}")
        post: dict[str, Any] | None = None
        for kind in self.config.types:  # one id space for both: the first that has it
            try:
                post = await self.client.get(kind, ref.key)
                break
            except NotFoundError:
                continue
        if post is None or post.get("status") == "trash":
            missing = RecordMissing(ref=ref, reason="not found" if post is None else "trashed")
            await publish_looked_up(
                self.ctx,
                missing,
                events.RECORD_MISSING,
                command,
                envelope,
                visibility=self.config.unpublished_visibility,
            )
            return Effect(found=False)
        terms: dict[int, str] = {}
        for taxonomy in ("categories", "tags"):
            terms.update(await self.client.term_names(taxonomy, term_ids(post, taxonomy)))
        record = article_from_post(post, system=self.ctx.name, config=self.config, terms=terms)
        if record.ref != ref:
            raise SkippableError(f"wordpress answered post {record.ref.key} for {ref.key!r}")
        await publish_looked_up(
            self.ctx,
            record,
            events.RECORD_UPSERTED.format(kind=record.kind),
            command,
            envelope,
            visibility=record.visibility,
        )
        return Effect(found=True, url=record.url)
