"""`threadlink backfill slack`: a channel's old threads become the same social events as live
traffic, so links and cards appear for threads from before threadlink was there.

It reads `conversations.history` (top-level messages, newest first) and, for each thread,
`conversations.replies`, a page at a time, at the rate of the methods' tier (Tier 3: about 50
calls a minute; a 429 is waited out for its `Retry-After`). Pages follow Slack's cursor
(`response_metadata.next_cursor`) where Slack gives one, and otherwise move the window's end
(`latest`) to the oldest message seen, which pages the same messages.

Resumable: after every history page, once its events are on Kafka, the place reached is
checkpointed in `<ns>.connectors.checkpoints` under `<connector>/backfill:<channel>:<since>`;
a run that is stopped starts again from there, and a finished one says so instead of reading
everything again (`--restart` does). A page interrupted half-way is read again: its events
carry the same ids (`<connector>:backfill:<channel>:<ts>`), and the link flow links a record
to a thread once, so no card is posted twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from connectors.base import Publisher
from connectors.errors import RetriableError, SkippableError
from connectors.runtime.kafka import read_to_end
from connectors.runtime.payloads import epoch_time
from connectors.slack.client import SlackClient
from connectors.slack.mapping import SlackIdentity, from_ignored_bot, social_message
from schemas import events
from schemas.checkpoints import Checkpoint, checkpoint_key
from schemas.envelope import Envelope
from schemas.topics import TopicNames
from threadlink.progress import Progress

log = logging.getLogger(__name__)

#: Messages per history or replies page (Slack suggests no more than 200).
PAGE_SIZE = 200
#: Attempts of one call that Slack answers 429 or 5xx before the run stops (it can resume).
MAX_ATTEMPTS = 6
#: The longest wait for one Retry-After; Slack's are seconds to a minute.
MAX_WAIT_S = 120.0
#: Pages of one thread's replies: a thread is bounded, whatever Slack says about `has_more`.
MAX_REPLY_PAGES = 1_000

CHECKPOINT = TypeAdapter(Envelope[Checkpoint])


@dataclass
class BackfillReport:
    channel: str
    messages: int = 0
    threads: int = 0
    pages: int = 0
    skipped: int = 0
    resumed: bool = False
    already_done: bool = False


class Pacer:
    """At most `per_minute` calls a minute, evenly spaced (Slack counts calls per minute)."""

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = 60.0 / per_minute
        self._clock = clock
        self._next = 0.0

    async def wait(self) -> None:
        now = self._clock()
        if now < self._next:
            await asyncio.sleep(self._next - now)
        self._next = max(now, self._next) + self.interval_s


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def channel_type_of(info: dict[str, Any]) -> str:
    """conversations.info's flags as the Events API's channel_type."""
    if info.get("is_im"):
        return "im"
    if info.get("is_mpim"):
        return "mpim"
    return "group" if info.get("is_private") else "channel"


def slack_ts(moment: datetime) -> str:
    return f"{moment.timestamp():.6f}"


class CheckpointStore:
    """The backfill's places in the connectors' checkpoint topic (the pollers' topic: a key of
    its own, which pollers ignore)."""

    def __init__(self, bootstrap_servers: str, topics: TopicNames, publisher: Publisher, connector: str) -> None:
        self._bootstrap = bootstrap_servers
        self._topics = topics
        self._publisher = publisher
        self._connector = connector

    async def load(self, source: str) -> dict[str, Any] | None:
        key = checkpoint_key(self._connector, source).encode()
        records = await asyncio.to_thread(
            read_to_end, self._bootstrap, self._topics.checkpoints, client_id=f"{self._connector}-backfill"
        )
        cursor: dict[str, Any] | None = None
        for record in records:
            if record.key != key:
                continue
            try:
                found = CHECKPOINT.validate_json(record.value).data.cursor
            except ValidationError:
                continue
            cursor = found if isinstance(found, dict) else None
        return cursor

    async def save(self, source: str, cursor: dict[str, Any]) -> None:
        checkpoint = Checkpoint(connector=self._connector, source=source, cursor=cursor, updated_at=datetime.now(UTC))
        envelope = Envelope.wrap(
            checkpoint,
            type=events.CHECKPOINT,
            source_system=self._connector,
            subject=checkpoint.key,
            visibility="restricted",
        )
        await self._publisher.publish(self._topics.checkpoints, checkpoint.key, envelope)


class SlackBackfill:
    def __init__(
        self,
        name: str,
        client: SlackClient,
        identity: SlackIdentity,
        publisher: Publisher,
        topics: TopicNames,
        checkpoints: CheckpointStore,
        *,
        calls_per_minute: float,
        ignore_bots: set[str] | None = None,
        page_size: int = PAGE_SIZE,
        progress: Callable[[str], Progress] = Progress,
    ) -> None:
        self._page_size = page_size
        self._name = name
        self._client = client
        self._identity = identity
        self._publisher = publisher
        self._topics = topics
        self._checkpoints = checkpoints
        self._pacer = Pacer(calls_per_minute)
        self._ignore_bots = ignore_bots or set()
        self._progress = progress

    async def run(
        self, channel: str, since: datetime, until: datetime | None = None, *, restart: bool = False
    ) -> BackfillReport:
        report = BackfillReport(channel)
        source = f"backfill:{channel}:{slack_ts(since)}"
        state = None if restart else await self._checkpoints.load(source)
        if state is not None and state.get("done"):
            report.already_done = True
            report.messages, report.threads = state.get("messages", 0), state.get("threads", 0)
            return report
        report.resumed = state is not None
        state = state or {"latest": slack_ts(until) if until else None, "cursor": None, "messages": 0, "threads": 0}
        report.messages, report.threads = state["messages"], state["threads"]

        await self._identity.resolve(self._client)
        info = (await self._call(self._client.conversation_info, channel)).get("channel") or {}
        kind, shared = channel_type_of(info), info.get("is_ext_shared") is True
        with self._progress(f"backfill {self._name} {channel}") as progress:
            progress.advance(report.messages)
            while True:
                page = await self._call(
                    self._client.conversation_history,
                    channel,
                    oldest=slack_ts(since),
                    latest=state["latest"],
                    cursor=state["cursor"],
                    limit=self._page_size,
                )
                report.pages += 1
                messages = [m for m in page.get("messages") or [] if isinstance(m, dict)]
                for message in messages:
                    await self._publish(channel, message, kind, shared, report, progress)
                    if _str(message.get("thread_ts")) == message.get("ts") and message.get("reply_count"):
                        await self._replies(channel, message, kind, shared, report, progress)
                        report.threads += 1
                next_cursor = _str((page.get("response_metadata") or {}).get("next_cursor"))
                more = page.get("has_more") is True and bool(messages)
                if more and next_cursor:
                    state["cursor"] = next_cursor
                elif more:
                    state["latest"], state["cursor"] = _str(messages[-1].get("ts")), None
                state.update(messages=report.messages, threads=report.threads, done=not more)
                # Only now: the page's events are on Kafka, so a run that stops here goes on after it.
                await self._checkpoints.save(source, state)
                if not more:
                    return report

    async def _replies(
        self,
        channel: str,
        root: dict[str, Any],
        kind: str,
        shared: bool,
        report: BackfillReport,
        progress: Progress,
    ) -> None:
        oldest: str | None = None
        cursor: str | None = None
        for _ in range(MAX_REPLY_PAGES):
            page = await self._call(
                self._client.conversation_replies,
                channel,
                str(root["ts"]),
                limit=self._page_size,
                oldest=oldest,
                cursor=cursor,
            )
            replies = [m for m in page.get("messages") or [] if isinstance(m, dict) and m.get("ts") != root["ts"]]
            for reply in replies:
                await self._publish(channel, reply, kind, shared, report, progress)
            cursor = _str((page.get("response_metadata") or {}).get("next_cursor"))
            if page.get("has_more") is not True or not replies:
                return
            if cursor is None:
                oldest = _str(replies[-1].get("ts"))
        log.warning(
            "backfill: thread %s/%s has more than %d pages of replies; the rest is left",
            channel,
            root["ts"],
            MAX_REPLY_PAGES,
        )

    async def _publish(
        self,
        channel: str,
        message: dict[str, Any],
        kind: str,
        shared: bool,
        report: BackfillReport,
        progress: Progress,
    ) -> None:
        event = {**message, "type": "message", "channel": channel, "channel_type": kind}
        if from_ignored_bot(event, self._ignore_bots):
            return
        try:
            social = social_message(
                event,
                platform=self._name,
                team_id=self._identity.team_id or "unknown",
                identity=self._identity,
                shared_externally=shared,
            )
            if social is None:  # joins, topic changes: not something said
                return
            envelope = Envelope.wrap(
                social,
                type=events.SOCIAL_MESSAGE.format(action="posted"),
                source_system=self._name,
                subject=social.thread.id,
                id=f"{self._name}:backfill:{channel}:{social.message_id}",
                occurred_at=epoch_time(social.message_id, what="slack message ts"),
                visibility=social.channel_visibility,
            )
        except (SkippableError, ValidationError) as exc:
            report.skipped += 1
            log.warning("backfill: message %s in %s skipped: %s", message.get("ts"), channel, str(exc)[:200])
            return
        await self._publisher.publish(self._topics.social_events, social.thread.id, envelope)
        report.messages += 1
        progress.advance()

    async def _call(
        self, method: Callable[..., Awaitable[dict[str, Any]]], *args: Any, **kwargs: Any
    ) -> dict[str, Any]:
        """One Web API call at the tier's pace; 429s and 5xx waited out, a few times."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            await self._pacer.wait()
            try:
                return await method(*args, **kwargs)
            except RetriableError as exc:
                if attempt == MAX_ATTEMPTS:
                    raise
                wait = min(exc.retry_after if exc.retry_after is not None else 2.0**attempt, MAX_WAIT_S)
                log.info("backfill: %s; trying again in %.0fs", exc, wait)
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")
