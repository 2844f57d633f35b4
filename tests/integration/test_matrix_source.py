"""Matrix as an application service against a real Synapse and the real broker: what real users
do in a real room reaches the social events topic, in the shapes Slack's events have."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer

from connectors.base import ConnectorContext, WebhookRequest, WebhookResponse
from connectors.matrix.config import MatrixConfig
from connectors.matrix.source import MatrixTransactionsSource
from connectors.runtime.kafka import KafkaPublisher
from connectors.runtime.webhooks import DeadLetters, build_app
from sandbox.contracts.matrix import matrix_contract
from schemas.social import SocialEvent, SocialMessage, SocialReaction
from tests.integration.kafka_helpers import envelopes
from threadlink.config import Settings
from threadlink.topics_admin import apply_topics

from .synapse_server import Synapse

pytestmark = pytest.mark.integration


class RecordingTransactions(MatrixTransactionsSource):
    """The real source, keeping each transaction it was handed (txnId, raw body) for the contract check."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.transactions: list[tuple[str, bytes]] = []

    async def handle(self, request: WebhookRequest) -> WebhookResponse:
        self.transactions.append((request.path_params.get("txnId", ""), request.body))
        return await super().handle(request)


async def _landed(bootstrap: str, topic: str, count: int) -> list[Any]:
    for _ in range(240):
        found = await asyncio.to_thread(envelopes, bootstrap, topic, SocialEvent)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.25)
    raise AssertionError(f"{count} events expected on {topic}, found {len(found)}: {[e.type for e in found]}")


async def test_room_traffic_reaches_the_social_events_topic(
    synapse: Synapse, kafka_bootstrap: str, namespace: str, vendor_specs: str
) -> None:
    assert synapse.appservice is not None
    appservice = synapse.appservice
    # A matrix connector, so its commands topic exists: the invite below becomes a JoinRoom command there.
    settings = Settings(
        kafka={"bootstrap_servers": kafka_bootstrap, "namespace": f"{namespace}-matrix"},
        connectors={"matrix": {"type": "matrix"}},
    )
    apply_topics(settings)
    topic = settings.kafka.topics.social_events
    publisher = KafkaPublisher(kafka_bootstrap, client_id="tests")
    config = MatrixConfig(
        homeserver_url=synapse.url, server_name="localhost", as_token=appservice.as_token, hs_token=appservice.hs_token
    )
    source = RecordingTransactions(config, ConnectorContext("matrix", settings.kafka.topics, publisher))
    server = TestServer(
        build_app([("matrix", source)], dead_letters=DeadLetters(publisher, settings.kafka.topics)),
        host="127.0.0.1",
        port=19109,
    )
    await source.start()
    await server.start_server()

    def call(method: str, path: str, token: str, body: dict[str, Any] | None = None) -> Any:
        return asyncio.to_thread(synapse.client, method, path, token, body)

    try:
        alice = await asyncio.to_thread(synapse.register_user, "alice-source")
        token = alice["access_token"]
        room = (await call("POST", "/_matrix/client/v3/createRoom", token, {"preset": "public_chat"}))["room_id"]
        quoted = urllib.parse.quote(room)
        bot = f"@{appservice.sender_localpart}:localhost"
        await call("POST", f"/_matrix/client/v3/rooms/{quoted}/invite", token, {"user_id": bot})
        await call("POST", f"/_matrix/client/v3/join/{quoted}", appservice.as_token, {})
        send = f"/_matrix/client/v3/rooms/{quoted}/send"
        root = (await call("PUT", f"{send}/m.room.message/r1", token, {"msgtype": "m.text", "body": "SHOP-7?"}))[
            "event_id"
        ]
        thread = {
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": root},
        }
        reply_body = {"msgtype": "m.text", "body": "same here", "m.relates_to": thread}
        reply = (await call("PUT", f"{send}/m.room.message/r2", token, reply_body))["event_id"]
        edit = {
            "msgtype": "m.text",
            "body": "* SHOP-8?",
            "m.new_content": {"msgtype": "m.text", "body": "SHOP-8?"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": root},
        }
        await call("PUT", f"{send}/m.room.message/r3", token, edit)
        reaction = {"m.relates_to": {"rel_type": "m.annotation", "event_id": reply, "key": "👀"}}
        await call("PUT", f"{send}/m.reaction/r4", token, reaction)
        await call("PUT", f"/_matrix/client/v3/rooms/{quoted}/redact/{urllib.parse.quote(reply)}/r5", token, {})

        landed = await _landed(kafka_bootstrap, topic, 1)
        social = [e.data for e in await _landed_until_deleted(kafka_bootstrap, topic)]
        messages = [d for d in social if isinstance(d, SocialMessage)]
        by_action = {(m.action, m.message_id): m for m in messages}
        posted = by_action[("posted", root)]
        assert posted.text == "SHOP-7?" and posted.thread.thread_id == root
        # public_chat: join rule public. Its state is asked of Synapse once the service has joined
        # (the invite came first, when the room's state was not readable yet).
        assert posted.channel_visibility == "public"
        assert (
            posted.permalink
            == f"https://matrix.to/#/{urllib.parse.quote(room, safe='')}/{urllib.parse.quote(root, safe='')}"
        )
        assert by_action[("posted", reply)].thread.thread_id == root
        assert by_action[("edited", root)].text == "SHOP-8?"
        assert by_action[("deleted", reply)].thread.thread_id == root
        reactions = [d for d in social if isinstance(d, SocialReaction)]
        assert [(r.reaction, r.message_id, r.thread.thread_id) for r in reactions] == [("👀", reply, root)]
        assert len({e.id for e in landed}) == len(landed)

        url = str(server.make_url("/webhooks/matrix/_matrix/app/v1/transactions/own-1"))
        fake = {
            "type": "m.room.message",
            "room_id": room,
            "sender": alice["user_id"],
            "event_id": "$repeated-event",
            "origin_server_ts": 1,
            "content": {"msgtype": "m.text", "body": "once"},
        }
        body = json.dumps({"events": [fake]})
        async with httpx.AsyncClient(timeout=30) as client:
            wrong = await client.put(url, content=body, headers={"Authorization": "Bearer wrong"})
            assert (wrong.status_code, wrong.json()["errcode"]) == (403, "M_FORBIDDEN")
            missing = await client.put(url, content=body)
            assert (missing.status_code, missing.json()["errcode"]) == (401, "M_UNAUTHORIZED")
            for _ in range(2):
                answer = await client.put(url, content=body, headers={"Authorization": f"Bearer {appservice.hs_token}"})
                assert answer.status_code == 200 and answer.json() == {}
        after = await asyncio.to_thread(envelopes, kafka_bootstrap, topic, SocialEvent)
        assert [e.id for e in after].count("matrix:$repeated-event") == 1
        # Every transaction Synapse sent is one the application service API allows.
        contract = matrix_contract()
        from_synapse = [(txn, body) for txn, body in source.transactions if not txn.startswith("own-")]
        assert from_synapse
        for txn, raw in from_synapse:
            assert contract.check_request("PUT", f"/_matrix/app/v1/transactions/{txn}", json.loads(raw)) == []
    finally:
        await server.close()
        await source.stop()
        publisher.close()


async def _landed_until_deleted(bootstrap: str, topic: str) -> list[Any]:
    for _ in range(240):
        found = await asyncio.to_thread(envelopes, bootstrap, topic, SocialEvent)
        if any(isinstance(e.data, SocialMessage) and e.data.action == "deleted" for e in found):
            return found
        await asyncio.sleep(0.25)
    raise AssertionError(f"no deletion on {topic}: {[e.type for e in found]}")
