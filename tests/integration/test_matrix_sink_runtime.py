"""The Matrix sink under the real sink runtime and broker, against the stand-in homeserver: a 429
(M_LIMIT_EXCEEDED with Retry-After) is waited out and the card posted once, its outcome carrying
the card's event id for later edits; a room threadlink's user is not in (403 M_FORBIDDEN) is
dead-lettered as skippable with the reason, and the sink goes on."""

from __future__ import annotations

import pytest

from connectors.matrix.client import MatrixClient
from connectors.matrix.config import MatrixConfig
from connectors.matrix.sink import MatrixSink
from connectors.runtime.kafka import KafkaPublisher
from connectors.runtime.retry import RetryPolicy
from connectors.runtime.sinks import SinkRunner
from sandbox.matrix_api import FakeMatrix, Room
from schemas import events
from schemas.commands import Command, PostCard, command_id_for
from schemas.deadletters import DeadLetter
from schemas.envelope import Envelope
from schemas.outcomes import Outcome
from schemas.records import RecordRef, TicketRecord
from schemas.social import ThreadRef
from schemas.topics import TopicNames
from tests.integration.kafka_helpers import envelopes, run_until

pytestmark = pytest.mark.integration

AS_TOKEN = "as-token-runtime-tests"
USER = "@ada:localhost"


def _card(fake: FakeMatrix, room: Room) -> Envelope[Command]:
    root = fake.post_user_message(room, USER, "Is SHOP-9 back?")["event_id"]
    thread = ThreadRef(platform="echo", workspace="localhost", channel=room.room_id, thread_id=root)
    record = TicketRecord(ref=RecordRef(system="jira", key="SHOP-9"), title="Checkout fails", status="To Do")
    command = PostCard(
        command_id=command_id_for("post_card", thread.id, record.ref.id, 0),
        target="echo",
        destination=thread,
        record=record,
        in_reply_to=root,
    )
    return Envelope.wrap(command, type=events.COMMAND.format(kind="post_card"), source_system="tests")


async def test_rate_limits_are_waited_out_and_a_room_not_joined_is_dead_lettered_as_skippable(
    kafka_bootstrap: str, sink_topics: TopicNames, vendor_specs: str
) -> None:
    fake = FakeMatrix(as_token=AS_TOKEN)
    await fake.start()
    publisher = KafkaPublisher(kafka_bootstrap, client_id="tests")
    joined, elsewhere = fake.add_room(members=(USER,)), fake.add_room(joined=False, members=(USER,))
    limited, refused = _card(fake, joined), _card(fake, elsewhere)
    for envelope in (limited, refused):  # one key: in this order
        await publisher.publish(sink_topics.commands("echo"), "k", envelope)
    fake.fail_next(429, retry_after=0.3, path_contains="/send/")
    config = MatrixConfig(homeserver_url=fake.url, server_name="localhost", as_token=AS_TOKEN, hs_token="hs")
    sink = MatrixSink(MatrixClient(config), per_room_per_s=50, room_burst=5)
    runner = SinkRunner(
        "echo",
        sink,
        bootstrap_servers=kafka_bootstrap,
        topics=sink_topics,
        publisher=publisher,
        client_id="tests",
        retry=RetryPolicy(initial_backoff_s=0.05, max_backoff_s=0.5),
    )

    def dead_lettered() -> list[DeadLetter]:
        return [e.data for e in envelopes(kafka_bootstrap, sink_topics.dead_letters, DeadLetter)]

    try:
        await run_until(runner, lambda: bool(fake.sent(joined)) and bool(dead_lettered()))
    finally:
        await sink.stop()
        await fake.stop()
        publisher.close()

    (card,) = fake.sent(joined)
    sends = [r for r in fake.requests if r.method == "PUT" and elsewhere.room_id not in r.path]
    assert len(sends) == 2  # the refused attempt (429) and the one that posted
    (letter,) = dead_lettered()
    assert letter.error_kind == "skippable"
    assert "not in the room" in letter.reason and AS_TOKEN not in letter.reason
    outcomes = {e.data.command_id: e.data for e in envelopes(kafka_bootstrap, sink_topics.outcomes, Outcome)}
    done = outcomes[limited.data.command_id]
    assert done.status == "done" and done.effect is not None and done.effect.message_id == card["event_id"]
    failed = outcomes[refused.data.command_id]
    assert (failed.status, failed.error_kind) == ("failed", "skippable")
    fake.assert_no_violations()
