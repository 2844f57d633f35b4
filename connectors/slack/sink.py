"""Carries out commands addressed to Slack: post a ticket card into a thread, update it."""

from __future__ import annotations

from typing import Any

from connectors.base import Sink
from connectors.errors import SkippableError
from connectors.slack.cards import render_card
from connectors.slack.client import SlackClient
from connectors.slack.mapping import SlackIdentity
from schemas.commands import Command, PostCard, UpdateCard
from schemas.envelope import Envelope


class SlackSink(Sink):
    """PostCard -> chat.postMessage into the thread; UpdateCard -> chat.update of the card.

    The runtime's ledger makes a redelivered command a no-op, so no duplicate check here.
    """

    def __init__(self, client: SlackClient, identity: SlackIdentity) -> None:
        self._client = client
        self._identity = identity

    async def start(self) -> None:
        """Learn threadlink's own ids with auth.test when they are not configured; a bad token
        fails here (FatalError), before the first command."""
        await self._identity.resolve(self._client)

    async def stop(self) -> None:
        await self._client.aclose()

    async def execute(self, command: Command, envelope: Envelope[Command]) -> dict[str, Any]:
        if isinstance(command, PostCard):
            text, blocks = render_card(command.record)
            answer = await self._client.post_message(
                command.thread.channel, text, blocks, thread_ts=command.thread.thread_id, unfurl_links=False
            )
            return {"channel": answer.get("channel", command.thread.channel), "ts": answer["ts"]}
        if isinstance(command, UpdateCard):
            if not command.card_message_id:
                raise SkippableError("slack update_card: no card_message_id, so no card to update")
            text, blocks = render_card(command.record)
            answer = await self._client.update_message(command.thread.channel, command.card_message_id, text, blocks)
            return {
                "channel": answer.get("channel", command.thread.channel),
                "ts": answer.get("ts", command.card_message_id),
            }
        raise SkippableError(f"slack cannot {command.kind}")
