"""Carries out commands addressed to Slack: post a record's card into a thread, update it in
place, delete it, and post short messages (a status change)."""

from __future__ import annotations

import logging
import re
from typing import Any

from connectors.base import Lane, Sink
from connectors.errors import ConnectorError, RetriableError, SkippableError
from connectors.runtime.dedup import RecentIds
from connectors.slack.cards import is_card_of, message_block, plain_text, render_card, with_mentions
from connectors.slack.client import SlackClient, outcome_unknown
from connectors.slack.config import SlackRateLimits
from connectors.slack.mapping import SlackIdentity
from schemas.commands import AddReaction, Command, DeleteCard, PostCard, PostMessage, UpdateCard
from schemas.envelope import Envelope
from schemas.outcomes import Effect
from schemas.social import Place, ThreadRef, UserRef

log = logging.getLogger(__name__)

#: A Slack message id (`ts`): what conversations.replies takes as `oldest`.
_SLACK_TS = re.compile(r"^\d+\.\d+$")


def slack_address(destination: Place) -> tuple[str, str | None]:
    """(channel, thread_ts) of a place: a thread's channel and root; a channel; a user's DM with
    the app (chat.postMessage takes a user id as the channel)."""
    if isinstance(destination, ThreadRef):
        return destination.channel, destination.thread_id
    if isinstance(destination, UserRef):
        return destination.user_id, None
    return destination.channel, None


class SlackSink(Sink):
    """PostCard -> chat.postMessage into the thread; UpdateCard -> chat.update of the card;
    DeleteCard -> chat.delete; PostMessage -> chat.postMessage of a short text.

    Lifecycle: the runtime calls `start()` once, then `execute` for commands (concurrently
    across threads, in order within one), and `stop()` once at the end, which closes the Web
    API client.

    The runtime's ledger makes a command a no-op once it is recorded as done, but
    chat.postMessage has no idempotency key: an attempt whose card Slack may have posted must
    not simply post it again. So every card's first block carries its command id
    (`cards.card_block_id`), and before posting a card that an earlier attempt may have posted,
    the sink looks for it, posted by threadlink, among the thread's replies after the message
    it answers (conversations.replies) and answers with it (`Effect(recovered=True)`). An
    earlier attempt may have posted it when

    - an attempt in this process failed after Slack may have acted (a timeout, a 5xx:
      `client.outcome_unknown`) and the runtime retries the command: the sink remembers those
      ids itself, in memory (at most `unsure_limit`, oldest go first);
    - the ledger holds the command as `attempted` but not done (a crash, a restart, another
      instance took the partition over, a dead-letter replay): the runtime, in whichever
      process handles it next, calls `outcome_unknown(command_id)` before executing it.

    The first attempt of a command posts without looking.
    """

    #: How many of a thread's messages after the one the card answers (oldest first,
    #: `replies_page` a call) are searched for a card whose posting ended ambiguously. Past
    #: that, the card is posted again: a double is better than a loss.
    recovery_scan_limit = 1000
    replies_page = 200  # Slack suggests no more than 200 a page
    #: How many command ids whose posting ended ambiguously are remembered.
    unsure_limit = 10_000
    #: How long they are remembered: well past the runtime's retries, for dead-letter replays.
    unsure_ttl_s = 7 * 24 * 3600.0

    def __init__(self, client: SlackClient, identity: SlackIdentity, limits: SlackRateLimits | None = None) -> None:
        self._client = client
        self._identity = identity
        self._unsure = RecentIds(max_items=self.unsure_limit, ttl_s=self.unsure_ttl_s)
        self._limits = limits or SlackRateLimits()

    def lanes(self, command: Command) -> list[Lane]:
        """Posts share their channel's lane; updates and deletions their Tier 3 method's."""
        limits = self._limits
        channel, _ = slack_address(command.destination) if hasattr(command, "destination") else ("", None)
        if isinstance(command, PostCard | PostMessage):
            return [Lane(f"channel:{channel}", limits.messages_per_channel_per_s, limits.channel_burst)]
        method = {"update_card": "chat.update", "delete_card": "chat.delete", "add_reaction": "reactions.add"}.get(
            command.kind
        )
        if method is None:
            return []
        return [Lane(f"method:{method}", limits.tier3_per_minute / 60, limits.tier3_burst)]

    async def start(self) -> None:
        """Learn threadlink's own ids with auth.test when they are not configured; a bad token
        fails here (FatalError), before the first command."""
        await self._identity.resolve(self._client)

    async def stop(self) -> None:
        await self._client.aclose()

    def outcome_unknown(self, command_id: str) -> None:
        """Called by the runtime for a command the ledger holds as attempted but not done:
        look for its card before posting it again."""
        self._unsure.remember(command_id)

    async def execute(self, command: Command, envelope: Envelope[Command]) -> Effect:
        if isinstance(command, PostCard):
            text, blocks = render_card(command.record, command.command_id, redacted=command.redacted)
            return await self._post_tagged(command, command.destination, text, blocks, command.in_reply_to)
        if isinstance(command, PostMessage):
            blocks = [message_block(command.text, command.command_id, command.mentions)]
            text = with_mentions(plain_text(command.text), command.mentions)
            return await self._post_tagged(command, command.destination, text, blocks, None)
        if isinstance(command, UpdateCard):
            channel, _ = slack_address(command.destination)
            text, blocks = render_card(command.record, redacted=command.redacted)
            answer = await self._client.update_message(channel, command.card_message_id, text, blocks)
            return Effect(message_id=str(answer.get("ts") or command.card_message_id))
        if isinstance(command, DeleteCard):
            channel, _ = slack_address(command.destination)
            try:
                await self._client.delete_message(channel, command.card_message_id)
            except SkippableError as exc:
                if "message_not_found" not in str(exc):
                    raise
                return Effect(message_id=command.card_message_id, skipped="the card was already gone")
            return Effect(message_id=command.card_message_id)
        if isinstance(command, AddReaction):
            channel, _ = slack_address(command.destination)
            try:
                await self._client.add_reaction(channel, command.message_id, command.reaction)
            except SkippableError as exc:
                if "already_reacted" not in str(exc):
                    raise
                return Effect(message_id=command.message_id, skipped="the reaction was already there")
            return Effect(message_id=command.message_id)
        raise SkippableError(f"slack cannot {command.kind}")

    async def _post_tagged(
        self,
        command: PostCard | PostMessage,
        destination: Place,
        text: str,
        blocks: list[dict[str, Any]],
        in_reply_to: str | None,
    ) -> Effect:
        """chat.postMessage of blocks whose first one carries the command's tag; looked for first
        when an earlier attempt may have posted it."""
        channel, thread_ts = slack_address(destination)
        if self._unsure.seen(command.command_id) and thread_ts is not None:
            found = await self._posted_card(command, channel, thread_ts, in_reply_to)
            if found is not None:
                return found
        try:
            answer = await self._client.post_message(channel, text, blocks, thread_ts=thread_ts, unfurl_links=False)
        except ConnectorError as exc:
            if outcome_unknown(exc):
                self._unsure.remember(command.command_id)
            raise
        return Effect(message_id=answer["ts"])

    async def _posted_card(
        self, command: PostCard | PostMessage, channel: str, thread_ts: str, in_reply_to: str | None
    ) -> Effect | None:
        """The card an earlier attempt of `command` posted, if the thread holds it.

        The card was posted after the message it answers (`in_reply_to`, in the same thread),
        so only the replies after that message are read (`oldest`): in a long thread the card
        is among the newest, out of reach of a scan from the root.

        A retriable failure of the lookup is raised: the command stays remembered, and the
        next attempt looks again. One Slack refuses for good (missing_scope without
        channels:history, ...) is logged and the card posted: a double is better than a loss."""
        oldest = in_reply_to if in_reply_to and _SLACK_TS.match(in_reply_to) else None
        cursor: str | None = None
        seen = 0
        try:
            for _page in range(-(-self.recovery_scan_limit // self.replies_page)):
                page = await self._client.conversation_replies(
                    channel, thread_ts, limit=self.replies_page, cursor=cursor, oldest=oldest
                )
                messages = page.get("messages")
                for message in messages if isinstance(messages, list) else []:
                    if self._is_own_card(message, command):
                        log.info(
                            "slack: card %s for %s was posted despite the failed attempt",
                            message["ts"],
                            command.command_id,
                        )
                        return Effect(message_id=message["ts"], recovered=True)
                    seen += 1
                metadata = page.get("response_metadata")
                cursor = metadata.get("next_cursor") if isinstance(metadata, dict) else None
                if not isinstance(cursor, str) or not cursor:
                    return None
        except RetriableError:
            raise
        except ConnectorError as exc:
            log.warning(
                "slack: cannot look for the card of %s that a failed attempt may have posted (%s); posting it, "
                "perhaps twice. The lookup needs the channels:history scope (groups:history for private channels).",
                command.command_id,
                exc,
            )
            return None
        log.warning(
            "slack: no card of %s among the first %d messages of its thread after %s; posting it",
            command.command_id,
            seen,
            oldest or "its root",
        )
        return None

    def _is_own_card(self, message: Any, command: PostCard | PostMessage) -> bool:
        """The command's card, posted by threadlink (another app could copy the tag)."""
        if not isinstance(message, dict) or not isinstance(message.get("ts"), str):
            return False
        user, bot_id = message.get("user"), message.get("bot_id")
        return is_card_of(message, command.command_id) and self._identity.is_self(
            user=user if isinstance(user, str) else None,
            bot_id=bot_id if isinstance(bot_id, str) else None,
            app_id=None,
        )
