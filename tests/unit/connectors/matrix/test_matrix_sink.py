"""The Matrix sink against the stand-in homeserver (sandbox/matrix_api.py, which checks every
request against the Matrix spec): cards as threaded notices, edits, redactions, idempotent
retries, and the errors the runtime needs told apart."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from connectors.errors import (
    AuthError,
    BackpressureError,
    FatalError,
    NotFoundError,
    RetriableError,
    SkippableError,
)
from connectors.matrix.client import MatrixClient, NotPermitted, raise_for_matrix, transaction_id
from connectors.matrix.config import MatrixConfig
from connectors.matrix.sink import MatrixSink
from sandbox.matrix_api import FakeMatrix, Room
from schemas import events
from schemas.commands import AddReaction, Command, DeleteCard, PostCard, PostMessage, UpdateCard, command_id_for
from schemas.envelope import Envelope
from schemas.records import RecordRef, TicketRecord
from schemas.social import ThreadRef, UserRef

pytestmark = pytest.mark.unit

AS_TOKEN = "as-token-for-sink-tests"
USER = "@ada:localhost"


@pytest.fixture
async def fake() -> AsyncIterator[FakeMatrix]:
    homeserver = FakeMatrix(as_token=AS_TOKEN)
    await homeserver.start()
    yield homeserver
    await homeserver.stop()
    homeserver.assert_no_violations()


@pytest.fixture
async def sink(fake: FakeMatrix) -> AsyncIterator[MatrixSink]:
    config = MatrixConfig(homeserver_url=fake.url, server_name="localhost", as_token=AS_TOKEN, hs_token="hs")
    built = MatrixSink(MatrixClient(config))
    yield built
    await built.stop()


def _record(status: str = "In Progress", title: str = "Checkout <fails>") -> TicketRecord:
    return TicketRecord(
        ref=RecordRef(system="jira", key="SHOP-7"),
        title=title,
        status=status,
        url="https://acme.atlassian.net/browse/SHOP-7",
    )


def _thread(fake: FakeMatrix) -> tuple[Room, ThreadRef, str]:
    room = fake.add_room(members=(USER,))
    root = fake.post_user_message(room, USER, "Is SHOP-7 back?")["event_id"]
    return room, ThreadRef(platform="matrix", workspace="localhost", channel=room.room_id, thread_id=root), root


def _post(thread: ThreadRef, root: str) -> PostCard:
    return PostCard(
        command_id=command_id_for("post_card", thread.id, "jira:SHOP-7", 0),
        target="matrix",
        destination=thread,
        record=_record(),
        in_reply_to=root,
    )


async def _run(sink: MatrixSink, command: Command) -> str | None:
    envelope = Envelope[Command].wrap(command, type=events.COMMAND.format(kind=command.kind), source_system="streams")
    return (await sink.execute(command, envelope)).message_id


async def test_a_card_is_a_threaded_notice_with_html_and_a_plain_fallback(fake: FakeMatrix, sink: MatrixSink) -> None:
    room, thread, root = _thread(fake)

    card_id = await _run(sink, _post(thread, root))

    (card,) = fake.sent(room)
    assert card["event_id"] == card_id
    content = card["content"]
    assert content["msgtype"] == "m.notice" and content["format"] == "org.matrix.custom.html"
    assert content["body"].startswith("SHOP-7: Checkout <fails> (In Progress)")
    assert (
        '<a href="https://acme.atlassian.net/browse/SHOP-7"><b>SHOP-7</b></a> Checkout &lt;fails&gt;'
        in (content["formatted_body"])
    )
    assert content["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": False,
        "m.in_reply_to": {"event_id": root},
    }
    assert fake.requests[-1].path.endswith(f"/send/m.room.message/{transaction_id(_post(thread, root).command_id)}")


async def test_a_retried_post_is_the_same_transaction_and_posts_once(fake: FakeMatrix, sink: MatrixSink) -> None:
    room, thread, root = _thread(fake)
    command = _post(thread, root)

    first = await _run(sink, command)
    again = await _run(sink, command)

    assert first == again
    assert len(fake.sent(room)) == 1
    assert len({r.path for r in fake.requests}) == 1


async def test_an_update_is_an_edit_of_the_card_and_answers_the_cards_own_id(
    fake: FakeMatrix, sink: MatrixSink
) -> None:
    room, thread, root = _thread(fake)
    card_id = await _run(sink, _post(thread, root))
    assert card_id is not None
    update = UpdateCard(
        command_id=command_id_for("update_card", thread.id, "jira:SHOP-7", 2),
        target="matrix",
        destination=thread,
        record=_record(status="Done"),
        card_message_id=card_id,
    )

    answered = await _run(sink, update)

    assert answered == card_id
    edit = fake.sent(room)[-1]["content"]
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": card_id}
    assert edit["m.new_content"]["body"].startswith("SHOP-7: Checkout <fails> (Done)")
    assert "m.relates_to" not in edit["m.new_content"]
    assert edit["body"].startswith("* SHOP-7")


async def test_a_deleted_card_is_redacted_and_a_gone_one_is_done_without_effect(
    fake: FakeMatrix, sink: MatrixSink
) -> None:
    room, thread, root = _thread(fake)
    card_id = await _run(sink, _post(thread, root))
    assert card_id is not None

    def delete(target: str) -> DeleteCard:
        return DeleteCard(
            command_id=command_id_for("delete_card", thread.id, target),
            target="matrix",
            destination=thread,
            record=RecordRef(system="jira", key="SHOP-7"),
            card_message_id=target,
            reason="the message naming SHOP-7 was deleted",
        )

    assert await _run(sink, delete(card_id)) == card_id
    (redaction,) = fake.sent(room, "m.room.redaction")
    assert redaction["redacts"] == card_id and redaction["content"]["reason"].startswith("the message")

    envelope_command = delete("$never-posted")
    effect = await sink.execute(envelope_command, Envelope[Command].wrap(envelope_command, type="t", source_system="s"))
    assert effect.skipped == "the card was already gone"


async def test_a_status_message_is_a_notice_in_the_thread(fake: FakeMatrix, sink: MatrixSink) -> None:
    room, thread, _ = _thread(fake)
    message = PostMessage(command_id="post_message-1", target="matrix", destination=thread, text="SHOP-7 is Done")

    await _run(sink, message)

    content = fake.sent(room)[-1]["content"]
    assert content["body"] == "SHOP-7 is Done"
    assert content["m.relates_to"]["is_falling_back"] is True  # a fallback reply to the root, not a real one


async def test_a_room_the_service_is_not_in_is_skippable_with_the_reason(fake: FakeMatrix, sink: MatrixSink) -> None:
    room = fake.add_room(joined=False, members=(USER,))
    root = fake.post_user_message(room, USER, "SHOP-7?")["event_id"]
    thread = ThreadRef(platform="matrix", workspace="localhost", channel=room.room_id, thread_id=root)

    with pytest.raises(NotPermitted, match="not in the room") as caught:
        await _run(sink, _post(thread, root))
    assert isinstance(caught.value, SkippableError) and caught.value.status == 403


async def test_a_user_destination_is_skippable_without_a_call(fake: FakeMatrix, sink: MatrixSink) -> None:
    command = PostMessage(
        command_id="post_message-2",
        target="matrix",
        destination=UserRef(platform="matrix", workspace="localhost", user_id=USER),
        text="hi",
    )
    with pytest.raises(SkippableError, match="needs a room"):
        await _run(sink, command)
    assert fake.requests == []


async def test_rate_limits_honour_retry_after_or_the_bodys_retry_after_ms(fake: FakeMatrix, sink: MatrixSink) -> None:
    _, thread, root = _thread(fake)
    fake.fail_next(429, retry_after=2.5)
    with pytest.raises(BackpressureError) as caught:
        await _run(sink, _post(thread, root))
    assert caught.value.retry_after == 2.5

    # Older homeservers give only the body's retry_after_ms.
    only_body = httpx.Response(429, json={"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 1200})
    with pytest.raises(BackpressureError) as caught:
        raise_for_matrix(only_body, what="matrix send")
    assert caught.value.retry_after == 1.2
    # M_LIMIT_EXCEEDED is a rate limit whatever the status says.
    with pytest.raises(BackpressureError):
        raise_for_matrix(httpx.Response(400, json={"errcode": "M_LIMIT_EXCEEDED"}), what="matrix send")


@pytest.mark.parametrize(
    ("status", "errcode", "expected"),
    [
        (401, "M_UNKNOWN_TOKEN", AuthError),
        (401, "M_MISSING_TOKEN", AuthError),
        (403, "M_UNKNOWN_TOKEN", AuthError),
        (403, "M_FORBIDDEN", NotPermitted),
        (404, "M_NOT_FOUND", NotFoundError),
        (502, None, RetriableError),
    ],
)
def test_answers_become_the_runtimes_kinds(status: int, errcode: str | None, expected: type[Exception]) -> None:
    body = {"errcode": errcode, "error": "secret-looking text @ada:localhost"} if errcode else {}
    with pytest.raises(expected) as caught:
        raise_for_matrix(httpx.Response(status, json=body), what="matrix send")
    assert "secret-looking" not in str(caught.value)


async def test_a_refused_as_token_is_an_auth_error(fake: FakeMatrix) -> None:
    config = MatrixConfig(homeserver_url=fake.url, server_name="localhost", as_token="wrong-token", hs_token="hs")
    wrong = MatrixSink(MatrixClient(config))
    _, thread, root = _thread(fake)
    try:
        with pytest.raises(AuthError) as caught:
            await _run(wrong, _post(thread, root))
    finally:
        await wrong.stop()
    assert "wrong-token" not in str(caught.value)


def test_transaction_ids_are_the_command_ids_and_url_safe() -> None:
    assert transaction_id("post_card-0123abcd") == "tl.post_card-0123abcd"
    odd = transaction_id("id with/slashes and spaces")
    assert odd.startswith("tl.sha256.") and odd == transaction_id("id with/slashes and spaces")


def test_posts_share_their_rooms_lane() -> None:
    sink = MatrixSink(
        MatrixClient(MatrixConfig(homeserver_url="http://x", server_name="x", as_token="a", hs_token="h"))
    )
    thread = ThreadRef(platform="matrix", workspace="x", channel="!r:x", thread_id="$root")
    (lane,) = sink.lanes(_post(thread, "$root"))
    assert lane.name == "room:!r:x"


async def test_start_refuses_an_as_token_of_another_user_than_the_configured_one(fake: FakeMatrix) -> None:
    config = MatrixConfig(homeserver_url=fake.url, server_name="other.org", as_token=AS_TOKEN, hs_token="hs")
    mismatched = MatrixSink(MatrixClient(config), bot_user_id=config.bot_user_id)
    try:
        with pytest.raises(FatalError, match="acts as @threadlink:localhost, but the config makes threadlink "):
            await mismatched.start()
        matching = MatrixSink(MatrixClient(config), bot_user_id=fake.bot)
        await matching.start()
        await matching.stop()
    finally:
        await mismatched.stop()


async def test_start_goes_on_while_the_homeserver_is_down() -> None:
    config = MatrixConfig(homeserver_url="http://127.0.0.1:9", server_name="localhost", as_token="a", hs_token="h")
    sink = MatrixSink(MatrixClient(config), bot_user_id=config.bot_user_id)
    await sink.start()  # logged; commands retry later
    await sink.stop()


async def test_a_reaction_is_an_annotation_with_the_emoji_once_and_an_unknown_name_is_skippable(
    fake: FakeMatrix, sink: MatrixSink
) -> None:
    room, thread, root = _thread(fake)

    def react(name: str) -> AddReaction:
        return AddReaction(
            command_id=command_id_for("add_reaction", thread.id, root, name),
            target="matrix",
            destination=thread,
            message_id=root,
            reaction=name,
        )

    first = await _run(sink, react("eyes"))
    assert await _run(sink, react("eyes")) == first, "a retry is the same transaction"
    (annotation,) = fake.sent(room, "m.reaction")
    assert annotation["content"]["m.relates_to"] == {"rel_type": "m.annotation", "event_id": root, "key": "👀"}
    with pytest.raises(SkippableError, match="no emoji known"):
        await _run(sink, react("party_parrot"))
