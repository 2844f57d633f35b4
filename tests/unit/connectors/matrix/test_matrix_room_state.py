"""A room's visibility comes from its state, asked of the homeserver with the as_token. The
invite reaches the service before it can read the room (403): that must not be taken for a room
without a join rule (it was: a public_chat room counted as restricted for good)."""

from __future__ import annotations

import json

import pytest

from connectors.base import ConnectorContext, WebhookRequest, WebhookRoute
from connectors.matrix.config import MatrixConfig
from connectors.matrix.source import MatrixTransactionsSource
from sandbox.matrix_api import FakeMatrix
from schemas.social import SocialMessage
from schemas.topics import TopicNames
from tests.unit.connectors.recording import RecordingPublisher

pytestmark = pytest.mark.unit

ROUTE = WebhookRoute("PUT", "/_matrix/app/v1/transactions/{txnId}")


async def test_a_public_room_is_public_once_joined_although_the_invite_came_first() -> None:
    fake = FakeMatrix(as_token="as")
    await fake.start()
    config = MatrixConfig(homeserver_url=fake.url, server_name="localhost", as_token="as", hs_token="hs")
    publisher = RecordingPublisher()
    source = MatrixTransactionsSource(config, ConnectorContext("matrix", TopicNames(namespace="t"), publisher))

    async def deliver(event: dict[str, object]) -> None:
        txn_id, body = fake.transaction([event])
        request = WebhookRequest(
            headers={"Authorization": "Bearer hs"}, body=body, method="PUT", path_params={"txnId": txn_id}, route=ROUTE
        )
        source.verify(request)
        await source.handle(request)

    try:
        room = fake.add_room(join_rule="public", joined=False, members=("@ada:localhost",))
        invite = {"membership": "invite"}
        await deliver(fake.post_event(room, "@ada:localhost", "m.room.member", invite, state_key=fake.bot))
        assert fake.requests[-1].path.endswith("/state/m.room.join_rules/")  # asked, and refused (403)

        room.members.add(fake.bot)
        await deliver(fake.post_user_message(room, "@ada:localhost", "SHOP-7?"))
    finally:
        await source.stop()
        await fake.stop()

    (message,) = [p.envelope.data for p in publisher.published if isinstance(p.envelope.data, SocialMessage)]
    assert message.channel_visibility == "public"
    assert json.loads(publisher.published[-1].envelope.to_bytes())["visibility"] == "public"
    fake.assert_no_violations()
