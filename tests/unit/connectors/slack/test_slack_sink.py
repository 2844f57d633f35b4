"""The sink and the Web API client against FakeSlack on 127.0.0.1: what Slack receives, and
how Slack's answers become the three kinds of error."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import ValidationError

from connectors.errors import AuthError, BackpressureError, ConnectorError, FatalError, RetriableError, SkippableError
from connectors.slack.cards import card_blocks, card_text, message_block
from connectors.slack.client import SlackClient, TransientAnswer
from connectors.slack.mapping import SlackIdentity
from connectors.slack.sink import SlackSink, slack_address
from sandbox.slack_api import FakeSlack
from schemas.commands import (
    AddComment,
    AddReaction,
    Command,
    DeleteCard,
    PostCard,
    PostMessage,
    UpdateCard,
    command_id_for,
)
from schemas.envelope import Envelope
from schemas.outcomes import Effect
from schemas.records import RecordRef, TicketRecord
from schemas.social import ChannelRef, ThreadRef, UserRef

from .conftest import BOT_ID, BOT_TOKEN, BOT_USER_ID, CHANNEL, TEAM_ID, make_config

pytestmark = pytest.mark.unit

RECORD = TicketRecord(
    ref=RecordRef(system="jira", key="PROJ-1"),
    title="Login fails on Safari",
    status="In Progress",
    assignee="Ada Lovelace",
    priority="High",
    url="https://acme.atlassian.net/browse/PROJ-1",
)


def thread(ts: str, channel: str = CHANNEL) -> ThreadRef:
    return ThreadRef(platform="slack", workspace=TEAM_ID, channel=channel, thread_id=ts)


def post_card(ts: str, channel: str = CHANNEL, record: TicketRecord = RECORD) -> PostCard:
    return PostCard(
        command_id=command_id_for("post_card", channel, ts, record.ref.id),
        target="slack",
        destination=thread(ts, channel),
        record=record,
        in_reply_to=ts,
    )


def update_card(ts: str, card_ts: str, record: TicketRecord = RECORD, command_id: str = "u1") -> UpdateCard:
    return UpdateCard(
        command_id=command_id, target="slack", destination=thread(ts), record=record, card_message_id=card_ts
    )


def delete_card(ts: str, card_ts: str, command_id: str = "d1") -> DeleteCard:
    return DeleteCard(
        command_id=command_id,
        target="slack",
        destination=thread(ts),
        record=RECORD.ref,
        card_message_id=card_ts,
        reason="the mention was deleted",
    )


def envelope(command: Command) -> Envelope[Command]:
    return Envelope.wrap(
        command,
        type=f"io.threadlink.command.{command.kind}",
        source_system="streams",
        occurred_at=datetime(2024, 1, 1, tzinfo=UTC),
    )


async def execute(sink: SlackSink, command: Command) -> Effect:
    return await sink.execute(command, envelope(command))


@pytest.fixture
async def sink(fake_slack: FakeSlack) -> AsyncIterator[SlackSink]:
    client = SlackClient(make_config(api_base_url=fake_slack.api_url, bot_user_id=BOT_USER_ID, bot_id=BOT_ID))
    sink = SlackSink(
        client, SlackIdentity(bot_user_id=BOT_USER_ID, bot_id=BOT_ID, workspace_url="https://sandbox.slack.com/")
    )
    await sink.start()
    yield sink
    await sink.stop()


async def test_card_is_posted_into_the_thread(fake_slack: FakeSlack, sink: SlackSink) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "Is PROJ-1 back?")
    command = post_card(root)
    effect = await execute(sink, command)

    (call,) = fake_slack.calls("chat.postMessage")
    assert call.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert call.content_type == "application/x-www-form-urlencoded"
    assert call.params["channel"] == CHANNEL
    assert call.params["thread_ts"] == root
    assert call.params["unfurl_links"] == "false"
    assert call.params["text"] == card_text(RECORD)
    assert json.loads(call.params["blocks"]) == card_blocks(RECORD, command.command_id)
    root_message, card = fake_slack.thread(CHANNEL, root)
    assert effect == Effect(message_id=card["ts"])  # the card's ts, so streams can update it later
    assert (card["ts"], card["thread_ts"], card["bot_id"]) == (effect.message_id, root, BOT_ID)
    assert card["blocks"][0]["block_id"] == f"tl-{command.command_id}"  # Slack keeps the tag
    assert root_message["reply_count"] == 1
    fake_slack.assert_no_violations()


async def test_card_is_updated_in_place(fake_slack: FakeSlack, sink: SlackSink) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "Is PROJ-1 back?")
    posted = await execute(sink, post_card(root))
    assert posted.message_id is not None
    # A new version's card shows its fields, which are filled from the ticket's status.
    done = TicketRecord.model_validate({**RECORD.model_dump(exclude={"fields"}), "status": "Done"})
    update = update_card(root, posted.message_id, done)

    assert await execute(sink, update) == Effect(message_id=posted.message_id)
    (call,) = fake_slack.calls("chat.update")
    assert call.params["channel"] == CHANNEL
    assert (call.params["ts"], call.params["text"]) == (posted.message_id, "PROJ-1: Login fails on Safari (Done)")
    card = fake_slack.thread(CHANNEL, root)[1]
    assert card["text"] == "PROJ-1: Login fails on Safari (Done)"
    assert card["blocks"] == card_blocks(done)
    fake_slack.assert_no_violations()


async def test_an_update_names_the_card_it_updates(fake_slack: FakeSlack, sink: SlackSink) -> None:
    # The contract refuses an UpdateCard without a card, so the sink never sees one.
    with pytest.raises(ValidationError, match="card_message_id"):
        UpdateCard(command_id="u2", target="slack", destination=thread("1700000000.000100"), record=RECORD)
    # One naming a card Slack does not have is skipped, not retried.
    root = await fake_slack.post_user_message(CHANNEL, "Is PROJ-1 back?")
    with pytest.raises(SkippableError, match="message_not_found"):
        await execute(sink, update_card(root, "1700000000.000999", command_id="u2"))
    fake_slack.assert_no_violations()


async def test_a_redacted_card_names_the_record_and_nothing_more(fake_slack: FakeSlack, sink: SlackSink) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "Is PROJ-1 back?")
    command = post_card(root).model_copy(update={"redacted": True})

    effect = await execute(sink, command)

    (call,) = fake_slack.calls("chat.postMessage")
    assert call.params["text"] == card_text(RECORD, redacted=True)
    assert json.loads(call.params["blocks"]) == card_blocks(RECORD, command.command_id, redacted=True)
    card = fake_slack.thread(CHANNEL, root)[1]
    assert effect == Effect(message_id=card["ts"])
    shown = json.dumps(card)
    assert "PROJ-1" in shown and card["blocks"][0]["block_id"] == f"tl-{command.command_id}"
    for secret in (RECORD.title, "In Progress", "Ada Lovelace", "High", "atlassian.net"):
        assert secret not in shown and secret not in call.params["text"]
    fake_slack.assert_no_violations()


async def test_a_card_is_deleted_with_chat_delete(fake_slack: FakeSlack, sink: SlackSink) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "Is PROJ-1 back?")
    posted = await execute(sink, post_card(root))
    assert posted.message_id is not None

    assert await execute(sink, delete_card(root, posted.message_id)) == Effect(message_id=posted.message_id)

    (call,) = fake_slack.calls("chat.delete")
    assert call.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert (call.params["channel"], call.params["ts"]) == (CHANNEL, posted.message_id)
    assert [m["ts"] for m in fake_slack.thread(CHANNEL, root)] == [root]  # only the mention is left
    fake_slack.assert_no_violations()


async def test_deleting_a_card_that_is_already_gone_is_done_without_a_side_effect(
    fake_slack: FakeSlack, sink: SlackSink
) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "Is PROJ-1 back?")
    posted = await execute(sink, post_card(root))
    assert posted.message_id is not None
    await execute(sink, delete_card(root, posted.message_id))

    # A redelivery, or someone removed the card by hand: the goal is reached, nothing to retry.
    again = await execute(sink, delete_card(root, posted.message_id, command_id="d2"))

    assert again.message_id == posted.message_id
    assert again.skipped
    assert len(fake_slack.calls("chat.delete")) == 2
    fake_slack.assert_no_violations()


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("cant_delete_message", SkippableError),
        ("channel_not_found", SkippableError),
        ("ratelimited", BackpressureError),
        ("internal_error", TransientAnswer),
        ("invalid_auth", AuthError),
    ],
)
async def test_delete_errors_map_to_error_kinds(
    fake_slack: FakeSlack, sink: SlackSink, error: str, kind: type[ConnectorError]
) -> None:
    fake_slack.fail_next("chat.delete", error)
    with pytest.raises(kind, match=rf"slack chat\.delete: {error}") as caught:
        await execute(sink, delete_card("1.2", "1.3"))
    assert type(caught.value) is kind


async def test_a_card_of_someone_else_is_not_deleted(fake_slack: FakeSlack, sink: SlackSink) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "Is PROJ-1 back?")
    with pytest.raises(SkippableError, match="cant_delete_message"):
        await execute(sink, delete_card(root, root))
    assert [m["ts"] for m in fake_slack.thread(CHANNEL, root)] == [root]


def post_message(destination: ThreadRef | ChannelRef | UserRef, text: str, command_id: str = "m1") -> PostMessage:
    return PostMessage(command_id=command_id, target="slack", destination=destination, text=text, about=RECORD.ref)


async def test_a_message_is_posted_into_the_thread_tagged_like_a_card(fake_slack: FakeSlack, sink: SlackSink) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "Is PROJ-1 back?")
    command = post_message(thread(root), "PROJ-1 is now Done <by Ada & co>")

    effect = await execute(sink, command)

    (call,) = fake_slack.calls("chat.postMessage")
    assert (call.params["channel"], call.params["thread_ts"]) == (CHANNEL, root)
    assert call.params["unfurl_links"] == "false"
    assert call.params["text"] == "PROJ-1 is now Done &lt;by Ada &amp; co&gt;"  # mrkdwn-escaped
    assert json.loads(call.params["blocks"]) == [message_block(command.text, command.command_id)]
    _root, message = fake_slack.thread(CHANNEL, root)
    assert effect == Effect(message_id=message["ts"])
    assert (message["thread_ts"], message["bot_id"]) == (root, BOT_ID)
    assert message["blocks"][0]["block_id"] == f"tl-{command.command_id}"  # findable by a retry
    fake_slack.assert_no_violations()


async def test_a_message_to_a_channel_starts_no_thread(fake_slack: FakeSlack, sink: SlackSink) -> None:
    await fake_slack.post_user_message(CHANNEL, "hello")
    channel = ChannelRef(platform="slack", workspace=TEAM_ID, channel=CHANNEL)

    effect = await execute(sink, post_message(channel, "Jira is back"))

    (call,) = fake_slack.calls("chat.postMessage")
    assert call.params["channel"] == CHANNEL
    assert "thread_ts" not in call.params
    assert effect.message_id is not None
    assert fake_slack.thread(CHANNEL, effect.message_id)[0]["text"] == "Jira is back"
    fake_slack.assert_no_violations()


def test_slack_addresses_of_places() -> None:
    assert slack_address(thread("1.2")) == (CHANNEL, "1.2")
    assert slack_address(ChannelRef(platform="slack", workspace=TEAM_ID, channel=CHANNEL)) == (CHANNEL, None)
    # chat.postMessage takes a user id as the channel of the app's DM with that user.
    assert slack_address(UserRef(platform="slack", workspace=TEAM_ID, user_id="U0ADA")) == ("U0ADA", None)


async def test_commands_slack_cannot_do_are_skipped(sink: SlackSink) -> None:
    command = AddComment(command_id="c1", target="slack", record=RECORD.ref, thread=thread("1.2"), body="hi")
    with pytest.raises(SkippableError, match="slack cannot add_comment"):
        await execute(sink, command)


async def test_start_learns_the_bots_identity_with_auth_test(fake_slack: FakeSlack) -> None:
    client = SlackClient(make_config(api_base_url=fake_slack.api_url))
    identity = SlackIdentity(app_id="A0CONFIGURED")
    sink = SlackSink(client, identity)
    await sink.start()
    await sink.start()  # asks Slack once
    await sink.stop()
    assert (identity.bot_user_id, identity.bot_id, identity.team_id, identity.app_id) == (
        BOT_USER_ID,
        BOT_ID,
        TEAM_ID,
        "A0CONFIGURED",
    )
    assert len(fake_slack.calls("auth.test")) == 1
    fake_slack.assert_no_violations()


async def test_configured_identity_needs_no_auth_test(fake_slack: FakeSlack, sink: SlackSink) -> None:
    assert fake_slack.calls("auth.test") == []


async def test_a_bad_token_fails_at_start(fake_slack: FakeSlack) -> None:
    sink = SlackSink(SlackClient(make_config(api_base_url=fake_slack.api_url, bot_token="xoxb-wrong")), SlackIdentity())
    try:
        with pytest.raises(FatalError, match=r"slack auth\.test: invalid_auth") as caught:
            await sink.start()
    finally:
        await sink.stop()
    assert "xoxb-wrong" not in str(caught.value)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("channel_not_found", SkippableError),
        ("not_in_channel", SkippableError),
        ("is_archived", SkippableError),
        ("msg_too_long", SkippableError),
        ("invalid_blocks", SkippableError),
        ("ratelimited", BackpressureError),
        ("invalid_auth", AuthError),
        ("not_authed", AuthError),
        ("account_inactive", AuthError),
        ("token_revoked", AuthError),
        ("missing_scope", AuthError),
        ("no_permission", AuthError),
        ("internal_error", TransientAnswer),  # a RetriableError whose outcome is unknown
        ("service_unavailable", TransientAnswer),
        ("some_error_slack_added_later", FatalError),
    ],
)
async def test_ok_false_answers_map_to_error_kinds(
    fake_slack: FakeSlack, sink: SlackSink, error: str, kind: type[ConnectorError]
) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "PROJ-1?")
    fake_slack.fail_next("chat.postMessage", error)
    with pytest.raises(kind, match=rf"slack chat\.postMessage: {error}") as caught:
        await execute(sink, post_card(root))
    assert type(caught.value) is kind
    assert caught.value.status == 200
    assert BOT_TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("error", "kind"), [("message_not_found", SkippableError), ("cant_update_message", SkippableError)]
)
async def test_update_errors_map_to_error_kinds(
    fake_slack: FakeSlack, sink: SlackSink, error: str, kind: type[ConnectorError]
) -> None:
    fake_slack.fail_next("chat.update", error)
    update = update_card("1.2", "1.3", command_id="u3")
    with pytest.raises(kind, match=error):
        await execute(sink, update)


async def test_errors_the_fake_finds_by_itself(fake_slack: FakeSlack, sink: SlackSink) -> None:
    with pytest.raises(SkippableError, match="channel_not_found"):
        await execute(sink, post_card("1700000000.000100", channel="C0NOWHERE1"))
    user_ts = await fake_slack.post_user_message(CHANNEL, "mine, not the bot's")
    not_ours = update_card(user_ts, user_ts, command_id="u4")
    with pytest.raises(SkippableError, match="cant_update_message"):
        await execute(sink, not_ours)
    fake_slack.add_channel("C0ARCHIVED1", archived=True)
    with pytest.raises(SkippableError, match="is_archived"):
        await execute(sink, post_card("1700000000.000100", channel="C0ARCHIVED1"))


async def test_http_429_is_backpressure_with_retry_after(fake_slack: FakeSlack, sink: SlackSink) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "PROJ-1?")
    fake_slack.fail_next("chat.postMessage", "ratelimited", status=429, retry_after=7)
    with pytest.raises(BackpressureError) as caught:
        await execute(sink, post_card(root))
    assert (caught.value.status, caught.value.retry_after) == (429, 7.0)
    assert (await execute(sink, post_card(root))).message_id  # the next try goes through


async def test_http_5xx_is_retriable(fake_slack: FakeSlack, sink: SlackSink) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "PROJ-1?")
    fake_slack.fail_next("chat.postMessage", None, status=503)
    with pytest.raises(RetriableError) as caught:
        await execute(sink, post_card(root))
    assert caught.value.status == 503 and not isinstance(caught.value, BackpressureError)


async def test_nobody_listening_is_retriable_and_names_no_token() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens there
    client = SlackClient(make_config(api_base_url=f"http://127.0.0.1:{port}/api"))
    with pytest.raises(RetriableError, match=r"slack chat\.postMessage: ConnectError") as caught:
        await client.post_message(CHANNEL, "hi")
    await client.aclose()
    assert BOT_TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("response", "kind", "message"),
    [
        (httpx.Response(200, text="<html>login</html>"), FatalError, "not a JSON object"),
        (httpx.Response(200, json={"ok": False, "error": "Bearer xoxb-echo <script>"}), FatalError, "unexpected_error"),
        (httpx.Response(401, json={"ok": False, "error": "invalid_auth"}), AuthError, "HTTP 401"),
        (
            httpx.Response(200, json={"ok": False, "error": "service_unavailable"}, headers={"Retry-After": "3"}),
            RetriableError,
            "service_unavailable",
        ),
    ],
    ids=["not-json", "odd-error-not-echoed", "http-401", "transient"],
)
async def test_answers_that_are_not_plain_slack(
    response: httpx.Response, kind: type[ConnectorError], message: str
) -> None:
    client = SlackClient(make_config(), transport=httpx.MockTransport(lambda _request: response))
    with pytest.raises(kind, match=message) as caught:
        await client.auth_test()
    assert "xoxb" not in str(caught.value) and "<" not in str(caught.value)
    await client.aclose()


async def test_client_sends_slack_form_encoding() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True, "channel": CHANNEL, "ts": "1.2"})

    client = SlackClient(make_config(api_base_url="https://slack.example/api/"), transport=httpx.MockTransport(answer))
    await client.post_message(CHANNEL, "hi", [{"type": "divider"}], thread_ts="1.1")
    await client.aclose()
    (request,) = seen
    assert str(request.url) == "https://slack.example/api/chat.postMessage"
    assert request.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = dict(httpx.QueryParams(request.content.decode()))
    assert form == {
        "channel": CHANNEL,
        "text": "hi",
        "unfurl_links": "false",
        "blocks": '[{"type":"divider"}]',
        "thread_ts": "1.1",
    }


async def test_a_reaction_is_added_with_reactions_add_and_one_already_there_is_done(
    fake_slack: FakeSlack, sink: SlackSink
) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "@threadlink ticket please")
    seen = AddReaction(command_id="r1", target="slack", destination=thread(root), message_id=root, reaction="eyes")

    assert await execute(sink, seen) == Effect(message_id=root)
    (call,) = fake_slack.calls("reactions.add")
    assert (call.params["channel"], call.params["timestamp"], call.params["name"]) == (CHANNEL, root, "eyes")
    assert fake_slack.reactions_by_threadlink(CHANNEL, root) == ["eyes"]

    again = await execute(sink, seen.model_copy(update={"command_id": "r2"}))  # a replay: already_reacted
    assert again.skipped == "the reaction was already there"
    assert sink.lanes(seen)[0].name == "method:reactions.add"
    fake_slack.assert_no_violations()
