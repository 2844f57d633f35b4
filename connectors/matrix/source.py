"""The application service transactions endpoint (Matrix AS API, `PUT /_matrix/app/v1/transactions/{txnId}`).

The homeserver authenticates with the registration's hs_token (`Authorization: Bearer`; the
deprecated `access_token` query parameter is accepted too; none is a 401 `M_UNAUTHORIZED`, a
wrong one a 403 `M_FORBIDDEN`, as the application service API says) and retries a transaction with the
same txnId until it gets a 2xx. A transaction is answered `{}` only once all its events are on
Kafka; a retry of one already published publishes nothing again. Across a restart the event ids
read back from the social events topic do the same job, per event.

An invitation of threadlink's own user becomes a JoinRoom command on the connector's own
commands topic, not a join made here: the homeserver's retries only cover the transaction, so
a join that failed after `{}` was answered would be lost, and one made before answering would
hold every later transaction back while the homeserver is slow. On the commands topic the Matrix
sink joins with the runtime's retries, room lanes and auth pause; the command id is made from the
invite's event id, so a redelivered transaction, another replica or a restart joins once (the
sink's ledger), and a repeated join changes nothing on the homeserver anyway.
"""

from __future__ import annotations

import hmac
import logging

from connectors.base import (
    ConnectorContext,
    Unauthorized,
    WebhookRequest,
    WebhookResponse,
    WebhookRoute,
    WebhookSource,
    header_value,
)
from connectors.errors import SkippableError
from connectors.matrix.client import MatrixClient
from connectors.matrix.config import MatrixConfig
from connectors.matrix.mapping import MatrixState, envelope_for, invited_room
from connectors.runtime.dedup import RecentIds
from connectors.runtime.payloads import parse_json_object
from connectors.runtime.recent import remember_published
from schemas import events
from schemas.commands import Command, JoinRoom, command_id_for
from schemas.envelope import Envelope
from schemas.social import ChannelRef

log = logging.getLogger(__name__)
MAX_EVENTS_PER_TRANSACTION = 1000


class MatrixTransactionsSource(WebhookSource):
    routes = (WebhookRoute("PUT", "/_matrix/app/v1/transactions/{txnId}"),)

    def __init__(
        self,
        config: MatrixConfig,
        ctx: ConnectorContext,
        state: MatrixState | None = None,
        client: MatrixClient | None = None,
    ) -> None:
        self._config = config
        self._client = client if client is not None else MatrixClient(config)
        self._ctx = ctx
        self._state = state or MatrixState(server_name=config.server_name, bot_user_id=config.bot_user_id)
        self._transactions = RecentIds()
        self._events = RecentIds()
        self._asked: set[str] = set()

    async def start(self) -> None:
        await remember_published(self._ctx, self._events, self._config.redelivery_window_s)

    async def stop(self) -> None:
        await self._client.aclose()

    def verify(self, request: WebhookRequest) -> None:
        authorization = header_value(request.headers, "Authorization") or ""
        token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""
        token = token or request.query.get("access_token", "")
        expected = self._config.hs_token.get_secret_value()
        # Application service API, "Authorization": no credentials -> 401 M_UNAUTHORIZED; wrong
        # ones -> 403 M_FORBIDDEN (the homeserver then knows its hs_token is not this service's).
        if not token:
            raise Unauthorized(
                "no hs_token", body={"errcode": "M_UNAUTHORIZED", "error": "no hs_token given"}, status=401
            )
        if not hmac.compare_digest(token.encode(), expected.encode()):
            raise Unauthorized(
                "wrong hs_token",
                body={"errcode": "M_FORBIDDEN", "error": "the hs_token is not this service's"},
                status=403,
            )

    async def handle(self, request: WebhookRequest) -> WebhookResponse:
        txn_id = request.path_params.get("txnId", "")
        if not txn_id:
            raise SkippableError("matrix transaction without a txnId")
        if self._transactions.seen(txn_id):
            return WebhookResponse(json={}, outcome="duplicate")
        payload = parse_json_object(request.body, what="matrix transaction")
        batch = payload.get("events")  # required by the application service API
        if not isinstance(batch, list) or len(batch) > MAX_EVENTS_PER_TRANSACTION:
            raise SkippableError(f"matrix transaction events must be a list of at most {MAX_EVENTS_PER_TRANSACTION}")
        published = 0
        for event in batch:
            if not isinstance(event, dict):
                continue
            event_id = event.get("event_id")
            if not isinstance(event_id, str) or self._events.seen(event_id):
                continue
            room_id = event.get("room_id")
            if isinstance(room_id, str) and room_id not in self._asked:
                # State set before the service joined never arrives in a transaction: ask until
                # the homeserver answers (it refuses before the service is in the room).
                known = await self._client.room_state(room_id)
                if known is not None:
                    self._asked.add(room_id)
                    self._state.rooms[room_id] = known
            invited = invited_room(event, bot_user_id=self._config.bot_user_id)
            if invited is not None:
                await self._ask_to_join(invited, event_id)
                self._events.remember(event_id)
                published += 1
                continue
            envelope = envelope_for(event, platform=self._ctx.name, state=self._state)
            if envelope is None:
                continue
            assert envelope.subject is not None
            await self._ctx.publisher.publish(self._ctx.topics.social_events, envelope.subject, envelope)
            self._events.remember(event_id)
            published += 1
        self._transactions.remember(txn_id)
        return WebhookResponse(json={}, outcome="accepted" if published else "ignored")

    async def _ask_to_join(self, room_id: str, invite_id: str) -> None:
        """Publish the JoinRoom command for the sink (see the module's docstring for why)."""
        channel = ChannelRef(platform=self._ctx.name, workspace=self._config.server_name, channel=room_id)
        command = JoinRoom(
            command_id=command_id_for("join_room", invite_id),
            target=self._ctx.name,
            destination=channel,
            invite_id=invite_id,
        )
        envelope = Envelope[Command].wrap(
            command,
            type=events.COMMAND.format(kind=command.kind),
            source_system=self._ctx.name,
            subject=channel.id,
            id=command.command_id,
            visibility="restricted",
        )
        await self._ctx.publisher.publish(self._ctx.topics.commands(self._ctx.name), channel.id, envelope)
        log.info("matrix: invited into %s; asked the sink to join it", room_id)
