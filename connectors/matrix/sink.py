"""Carries out commands addressed to Matrix through the client-server API, as the application
service's own user: post a record's card into a thread, edit it in place, redact it, and post
short notices (a status change)."""

from __future__ import annotations

import logging

from connectors.base import Lane, Sink
from connectors.errors import FatalError, NotFoundError, RetriableError, SkippableError
from connectors.matrix.cards import as_edit, card_content, in_thread, message_content
from connectors.matrix.client import MatrixClient, NotPermitted, transaction_id
from schemas.commands import AddReaction, Command, DeleteCard, JoinRoom, PostCard, PostMessage, UpdateCard
from schemas.envelope import Envelope
from schemas.outcomes import Effect
from schemas.social import Place, ThreadRef, UserRef

log = logging.getLogger(__name__)


def matrix_room(destination: Place) -> tuple[str, str | None]:
    """(room id, thread root) of a place. A user (a DM) has no room threadlink knows of."""
    if isinstance(destination, UserRef):
        raise SkippableError("matrix cannot message a user directly: it needs a room (a DM is a room)")
    if isinstance(destination, ThreadRef):
        return destination.channel, destination.thread_id
    return destination.channel, None


#: Matrix annotates with the emoji itself; commands name reactions as Slack does.
REACTION_KEYS = {
    "eyes": "👀",
    "white_check_mark": "✅",
    "ticket": "🎫",
    "bell": "🔔",
    "thumbsup": "👍",
    "+1": "👍",
}


class MatrixSink(Sink):
    """PostCard -> an `m.notice` in the thread (`m.thread`, with the `m.in_reply_to` fallback);
    UpdateCard -> an edit of the card (`m.replace` with `m.new_content`); DeleteCard -> a redaction
    of the card; PostMessage -> a short `m.notice` in the thread; JoinRoom -> a join of the room
    threadlink's user was invited to (the source publishes it when it sees the invitation).

    Lifecycle: the runtime calls `start()` once, then `execute` for commands (concurrently
    across threads, in order within one), and `stop()` once at the end, which closes the client.

    Idempotent without looking anything up: every request's txnId is derived from the command id
    (`client.transaction_id`), and the homeserver answers a repeated transaction of the same
    as_token with the event it made the first time (client-server API, "Transaction
    identifiers"). So a retry after a timeout, a restart, or a dead-letter replay posts nothing
    twice, within the homeserver's transaction memory (Synapse: about 30 minutes).

    Outcomes: the Effect's `message_id` is the card's event id; an edit answers with the card's
    own id (not the edit's), since every later edit and the redaction must name the original.
    """

    def __init__(
        self,
        client: MatrixClient,
        *,
        bot_user_id: str | None = None,
        per_room_per_s: float = 1.0,
        room_burst: int = 5,
    ) -> None:
        self._client = client
        self._bot_user_id = bot_user_id
        self._per_room_per_s = per_room_per_s
        self._room_burst = room_burst

    def lanes(self, command: Command) -> list[Lane]:
        """Every send shares its room's lane (a homeserver limits messages per sender)."""
        destination = getattr(command, "destination", None)
        if destination is None or isinstance(destination, UserRef):
            return []
        return [Lane(f"room:{destination.channel}", self._per_room_per_s, self._room_burst)]

    async def start(self) -> None:
        """Ask the homeserver whom the as_token acts as (whoami). A refused token stops the
        process here (AuthError), before the first command. A user other than the configured
        one (`sender_localpart`, `server_name`) is refused too: the source would not know
        threadlink's own cards and could answer them. A homeserver that is down is only logged:
        the commands wait and retry."""
        try:
            user_id = await self._client.whoami()
        except RetriableError as exc:
            log.warning("matrix: could not ask the homeserver who the as_token is (%s); going on", exc)
            return
        if self._bot_user_id is not None and user_id != self._bot_user_id:
            raise FatalError(
                f"matrix: the as_token acts as {user_id}, but the config makes threadlink {self._bot_user_id}: "
                "set sender_localpart and server_name to match the registration"
            )

    async def stop(self) -> None:
        await self._client.aclose()

    async def execute(self, command: Command, envelope: Envelope[Command]) -> Effect:
        txn = transaction_id(command.command_id)
        if isinstance(command, PostCard | PostMessage):
            room, root = matrix_room(command.destination)
            if isinstance(command, PostCard):
                content = card_content(command.record, redacted=command.redacted)
                reply_to = command.in_reply_to
            else:
                content, reply_to = message_content(command.text), None
            if root is not None:
                content = in_thread(content, root, reply_to)
            event_id = await self._client.send_event(room, "m.room.message", txn, content)
            return Effect(message_id=event_id)
        if isinstance(command, UpdateCard):
            room, _ = matrix_room(command.destination)
            content = as_edit(card_content(command.record, redacted=command.redacted), command.card_message_id)
            await self._client.send_event(room, "m.room.message", txn, content)
            return Effect(message_id=command.card_message_id)
        if isinstance(command, DeleteCard):
            room, _ = matrix_room(command.destination)
            try:
                await self._client.redact(room, command.card_message_id, txn, reason=command.reason[:200])
            except NotFoundError:
                return Effect(message_id=command.card_message_id, skipped="the card was already gone")
            return Effect(message_id=command.card_message_id)
        if isinstance(command, AddReaction):
            emoji = REACTION_KEYS.get(command.reaction)
            if emoji is None:
                raise SkippableError(f"matrix: no emoji known for the reaction {command.reaction!r}")
            room, _ = matrix_room(command.destination)
            relation = {"rel_type": "m.annotation", "event_id": command.message_id, "key": emoji}
            event_id = await self._client.send_event(room, "m.reaction", txn, {"m.relates_to": relation})
            return Effect(message_id=event_id)
        if isinstance(command, JoinRoom):
            try:
                await self._client.join(command.destination.channel)
            except NotPermitted:
                # The invitation was withdrawn (or the room is gone for us) before the join:
                # nothing to do, and nothing an operator needs to replay.
                return Effect(skipped="the invitation is no longer valid")
            return Effect()
        raise SkippableError(f"matrix cannot {command.kind}")
