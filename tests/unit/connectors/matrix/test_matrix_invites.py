"""Invitations of threadlink's own user: the transactions source turns one into a JoinRoom
command on the connector's own commands topic (once per invite, whatever the homeserver
redelivers), never for someone else's invite; the sink joins through the client-server API
(checked against the spec by the stand-in homeserver), harmlessly again when repeated."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from connectors.base import ConnectorContext, WebhookRequest, WebhookRoute
from connectors.errors import BackpressureError
from connectors.matrix.client import MatrixClient
from connectors.matrix.config import MatrixConfig
from connectors.matrix.sink import MatrixSink
from connectors.matrix.source import MatrixTransactionsSource
from sandbox.matrix_api import FakeMatrix
from schemas import events
from schemas.commands import Command, JoinRoom, command_id_for
from schemas.envelope import Envelope
from schemas.topics import TopicNames
from tests.unit.connectors.recording import RecordingPublisher

pytestmark = pytest.mark.unit

ROUTE = WebhookRoute("PUT", "/_matrix/app/v1/transactions/{txnId}")
ADA = "@ada:localhost"
TOPICS = TopicNames(namespace="t")


@pytest.fixture
async def fake() -> AsyncIterator[FakeMatrix]:
    homeserver = FakeMatrix(as_token="as")
    await homeserver.start()
    yield homeserver
    await homeserver.stop()
    homeserver.assert_no_violations()


def _config(fake: FakeMatrix) -> MatrixConfig:
    return MatrixConfig(homeserver_url=fake.url, server_name="localhost", as_token="as", hs_token="hs")


async def _deliver(source: MatrixTransactionsSource, txn_id: str, body: bytes) -> str:
    request = WebhookRequest(
        headers={"Authorization": "Bearer hs"}, body=body, method="PUT", path_params={"txnId": txn_id}, route=ROUTE
    )
    source.verify(request)
    return (await source.handle(request)).outcome


async def test_an_invite_of_the_bot_is_one_join_command_and_others_invites_are_ignored(fake: FakeMatrix) -> None:
    publisher = RecordingPublisher()
    source = MatrixTransactionsSource(_config(fake), ConnectorContext("matrix", TOPICS, publisher))
    room = fake.add_room(join_rule="invite", joined=False, members=(ADA,))
    mine = fake.invite(room, ADA, fake.bot)
    theirs = fake.invite(room, ADA, "@bob:localhost")
    try:
        txn_id, body = fake.transaction([mine, theirs])
        assert await _deliver(source, txn_id, body) == "accepted"
        assert await _deliver(source, txn_id, body) == "duplicate"  # the homeserver's retry
        again_id, again = fake.transaction([mine])  # the same invite in a new transaction
        assert await _deliver(source, again_id, again) == "ignored"
    finally:
        await source.stop()

    (published,) = publisher.on(TOPICS.commands("matrix"))
    command = published.envelope.data
    assert isinstance(command, JoinRoom)
    assert command.destination.channel == room.room_id and command.target == "matrix"
    assert command.command_id == command_id_for("join_room", mine["event_id"])
    assert published.key == command.destination.id
    assert published.envelope.type == "io.threadlink.command.join_room"
    assert publisher.on(TOPICS.social_events) == []  # an invite is not yet a membership


async def test_the_sink_joins_the_room_it_was_invited_to_and_a_repeat_changes_nothing(fake: FakeMatrix) -> None:
    room = fake.add_room(join_rule="invite", joined=False, members=(ADA,))
    invite = fake.invite(room, ADA, fake.bot)
    sink = MatrixSink(MatrixClient(_config(fake)))
    command = JoinRoom(
        command_id=command_id_for("join_room", invite["event_id"]),
        target="matrix",
        destination={"platform": "matrix", "workspace": "localhost", "channel": room.room_id},
        invite_id=invite["event_id"],
    )
    envelope = Envelope[Command].wrap(command, type=events.COMMAND.format(kind=command.kind), source_system="matrix")
    try:
        first = await sink.execute(command, envelope)
        second = await sink.execute(command, envelope)
    finally:
        await sink.stop()
    assert first.skipped is None and second.skipped is None
    assert fake.bot in room.members
    joins = fake.sent(room, "m.room.member")
    assert [e["content"]["membership"] for e in joins] == ["join"]  # joined once
    assert [r.path for r in fake.requests] == [f"/_matrix/client/v3/join/{room.room_id}"] * 2
    assert all(r.authenticated and r.json == {} for r in fake.requests)
    assert sink.lanes(command)[0].name == f"room:{room.room_id}"  # rate-limited with the room's sends


async def test_a_withdrawn_invite_is_done_without_effect_and_a_429_is_backpressure(fake: FakeMatrix) -> None:
    room = fake.add_room(join_rule="invite", joined=False, members=(ADA,))
    sink = MatrixSink(MatrixClient(_config(fake)))
    command = JoinRoom(
        command_id="join_room-x",
        target="matrix",
        destination={"platform": "matrix", "workspace": "localhost", "channel": room.room_id},
        invite_id="$gone",
    )
    envelope = Envelope[Command].wrap(command, type=events.COMMAND.format(kind=command.kind), source_system="matrix")
    try:
        fake.fail_next(429, retry_after=2, path_contains="/join/")
        with pytest.raises(BackpressureError) as limited:
            await sink.execute(command, envelope)
        assert limited.value.retry_after == 2
        effect = await sink.execute(command, envelope)  # no invitation: 403 M_FORBIDDEN
    finally:
        await sink.stop()
    assert effect.skipped == "the invitation is no longer valid"
    assert fake.bot not in room.members
