"""A card is posted once even when chat.postMessage fails after Slack may have posted it: the
runtime retries the same PostCard, and the retry looks for the card (tagged with the command
id) in the thread before posting."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from connectors.errors import (
    BackpressureError,
    ConnectorError,
    FatalError,
    RetriableError,
    classify_transport_error,
)
from connectors.runtime.retry import RetryPolicy
from connectors.slack.cards import card_block_id, card_blocks, message_block
from connectors.slack.client import PostedWithoutTs, SlackClient, TransientAnswer, outcome_unknown, raise_for_slack
from connectors.slack.mapping import SlackIdentity
from connectors.slack.sink import SlackSink
from sandbox.slack_api import FakeSlack
from schemas.commands import Command, PostCard, PostMessage, command_id_for
from schemas.envelope import Envelope
from schemas.outcomes import Effect
from schemas.records import RecordRef, TicketRecord
from schemas.social import ThreadRef

from .conftest import BOT_ID, BOT_TOKEN, BOT_USER_ID, CHANNEL, TEAM_ID, make_config

pytestmark = pytest.mark.unit

#: The runner's retry policy, with backoffs small enough for a unit test.
TINY_RETRIES = RetryPolicy(max_attempts=4, max_total_s=10, initial_backoff_s=0.001, max_backoff_s=0.005)
#: The client's timeout in these tests; FakeSlack holds answers back far longer (until it stops).
CLIENT_TIMEOUT_S = 0.2
RECORD = TicketRecord(ref=RecordRef(system="jira", key="PROJ-1"), title="Login fails", status="Open")


def post_card(root: str, key: str = "PROJ-1", *, in_reply_to: str | None = None) -> PostCard:
    """The card for a mention of `key` in the thread of `root` (by `in_reply_to`; the root itself
    unless given)."""
    record = RECORD.model_copy(update={"ref": RecordRef(system="jira", key=key)})
    return PostCard(
        command_id=command_id_for("post_card", CHANNEL, root, record.ref.id),
        target="slack",
        destination=ThreadRef(platform="slack", workspace=TEAM_ID, channel=CHANNEL, thread_id=root),
        record=record,
        in_reply_to=in_reply_to or root,
    )


def envelope(command: Command) -> Envelope[Command]:
    return Envelope.wrap(
        command,
        type=f"io.threadlink.command.{command.kind}",
        source_system="streams",
        occurred_at=datetime(2024, 1, 1, tzinfo=UTC),
    )


def identity() -> SlackIdentity:
    return SlackIdentity(bot_user_id=BOT_USER_ID, bot_id=BOT_ID, workspace_url="https://sandbox.slack.com/")


async def run_like_the_runner(sink: SlackSink, command: Command) -> list[Any]:
    """Execute through RetryPolicy.call as SinkRunner does; the outcome of each attempt in order
    (an exception, or the last one's Effect)."""
    outcomes: list[Any] = []

    async def attempt() -> Effect:
        try:
            result = await sink.execute(command, envelope(command))
        except ConnectorError as exc:
            outcomes.append(exc)
            raise
        outcomes.append(result)
        return result

    await TINY_RETRIES.call(attempt)
    return outcomes


def cards(fake: FakeSlack, root: str) -> list[dict[str, Any]]:
    return [m for m in fake.thread(CHANNEL, root) if m.get("bot_id") == BOT_ID]


@pytest.fixture
async def quick_sink(fake_slack: FakeSlack) -> AsyncIterator[SlackSink]:
    """A sink whose client gives up after CLIENT_TIMEOUT_S."""
    sink = SlackSink(
        SlackClient(make_config(api_base_url=fake_slack.api_url, request_timeout_s=CLIENT_TIMEOUT_S)), identity()
    )
    await sink.start()
    yield sink
    await sink.stop()


AMBIGUOUS_FAULTS = [
    pytest.param({"error": None, "status": 503}, "HTTP 503", id="answered-503"),
    pytest.param({"error": None, "status": 503, "delay_s": 30}, "ReadTimeout", id="timed-out"),
    pytest.param({"error": "internal_error"}, "internal_error", id="internal_error"),
]


@pytest.mark.parametrize(("fault", "error"), AMBIGUOUS_FAULTS)
async def test_a_card_slack_posted_despite_the_failure_is_recovered_not_posted_again(
    fake_slack: FakeSlack, quick_sink: SlackSink, fault: dict[str, Any], error: str
) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "PROJ-1 is broken again")
    fake_slack.fail_next("chat.postMessage", after_store=True, **fault)
    command = post_card(root)

    first, second = await run_like_the_runner(quick_sink, command)

    assert isinstance(first, RetriableError)
    assert error in str(first)
    [card] = cards(fake_slack, root)  # exactly one card in the thread
    assert second == Effect(message_id=card["ts"], recovered=True)
    assert card["blocks"] == card_blocks(RECORD, command.command_id)
    assert len(fake_slack.calls("chat.postMessage")) == 1  # the retry looked, found it, posted nothing
    [lookup] = fake_slack.calls("conversations.replies")
    assert (lookup.method, lookup.content_type) == ("GET", None)
    assert lookup.params == {"channel": CHANNEL, "ts": root, "limit": "200", "oldest": root}
    fake_slack.assert_no_violations()


@pytest.mark.parametrize(("fault", "error"), AMBIGUOUS_FAULTS)
async def test_a_card_slack_did_not_post_is_posted_exactly_once_by_the_retry(
    fake_slack: FakeSlack, quick_sink: SlackSink, fault: dict[str, Any], error: str
) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "PROJ-1 is broken again")
    fake_slack.fail_next("chat.postMessage", **fault)

    first, second = await run_like_the_runner(quick_sink, post_card(root))

    assert isinstance(first, RetriableError)
    assert error in str(first)
    [card] = cards(fake_slack, root)
    assert second == Effect(message_id=card["ts"])
    assert len(fake_slack.calls("chat.postMessage")) == 2
    assert len(fake_slack.calls("conversations.replies")) == 1  # looked first, found nothing, posted
    fake_slack.assert_no_violations()


def post_message(root: str, text: str = "PROJ-1 is now Done") -> PostMessage:
    """A short message into the thread of `root` (a status change of a followed record)."""
    return PostMessage(
        command_id=command_id_for("post_message", CHANNEL, root, text),
        target="slack",
        destination=ThreadRef(platform="slack", workspace=TEAM_ID, channel=CHANNEL, thread_id=root),
        text=text,
        about=RECORD.ref,
    )


@pytest.mark.parametrize(("fault", "error"), AMBIGUOUS_FAULTS)
async def test_a_message_slack_posted_despite_the_failure_is_recovered_not_posted_again(
    fake_slack: FakeSlack, quick_sink: SlackSink, fault: dict[str, Any], error: str
) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "PROJ-1 is broken again")
    fake_slack.fail_next("chat.postMessage", after_store=True, **fault)
    command = post_message(root)

    first, second = await run_like_the_runner(quick_sink, command)

    assert isinstance(first, RetriableError)
    assert error in str(first)
    [message] = cards(fake_slack, root)  # exactly one message in the thread
    assert second == Effect(message_id=message["ts"], recovered=True)
    assert message["blocks"] == [message_block(command.text, command.command_id)]
    assert len(fake_slack.calls("chat.postMessage")) == 1  # the retry looked, found it, posted nothing
    [lookup] = fake_slack.calls("conversations.replies")
    # A message answers no mention: the thread is searched from its root.
    assert lookup.params == {"channel": CHANNEL, "ts": root, "limit": "200"}
    fake_slack.assert_no_violations()


@pytest.mark.parametrize(("fault", "error"), AMBIGUOUS_FAULTS)
async def test_a_message_slack_did_not_post_is_posted_exactly_once_by_the_retry(
    fake_slack: FakeSlack, quick_sink: SlackSink, fault: dict[str, Any], error: str
) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "PROJ-1 is broken again")
    fake_slack.fail_next("chat.postMessage", **fault)

    first, second = await run_like_the_runner(quick_sink, post_message(root))

    assert isinstance(first, RetriableError)
    assert error in str(first)
    [message] = cards(fake_slack, root)
    assert second == Effect(message_id=message["ts"])
    assert len(fake_slack.calls("chat.postMessage")) == 2
    assert len(fake_slack.calls("conversations.replies")) == 1  # looked first, found nothing, posted
    fake_slack.assert_no_violations()


async def test_a_card_is_not_mistaken_for_a_message_of_another_command(
    fake_slack: FakeSlack, quick_sink: SlackSink
) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "PROJ-1 is broken again")
    await quick_sink.execute(post_card(root), envelope(post_card(root)))  # threadlink's card, other tag
    fake_slack.fail_next("chat.postMessage", None, status=503)
    command = post_message(root)

    first, second = await run_like_the_runner(quick_sink, command)

    assert isinstance(first, RetriableError)
    card, message = cards(fake_slack, root)
    assert second == Effect(message_id=message["ts"])  # posted, not "recovered" as the card
    assert message["blocks"][0]["block_id"] == card_block_id(command.command_id) != card["blocks"][0]["block_id"]
    fake_slack.assert_no_violations()


class FailFirstPost(httpx.AsyncBaseTransport):
    """The network, except that the first chat.postMessage fails with `error` before reaching
    Slack (a refused connection, or one that drops with the request unprocessed)."""

    def __init__(self, error: type[httpx.TransportError]) -> None:
        self.error: type[httpx.TransportError] | None = error
        self._network = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.error is not None and request.url.path.endswith("/chat.postMessage"):
            error, self.error = self.error, None
            raise error("injected", request=request)
        return await self._network.handle_async_request(request)

    async def aclose(self) -> None:
        await self._network.aclose()


@pytest.mark.parametrize(
    ("error", "lookups"),
    [(httpx.ConnectError, 0), (httpx.ReadError, 1)],
    ids=["never-sent", "dropped"],
)
async def test_a_transport_failure_slack_never_saw_is_posted_exactly_once(
    fake_slack: FakeSlack, error: type[httpx.TransportError], lookups: int
) -> None:
    client = SlackClient(make_config(api_base_url=fake_slack.api_url), transport=FailFirstPost(error))
    sink = SlackSink(client, identity())
    root = await fake_slack.post_user_message(CHANNEL, "PROJ-1 is broken again")
    try:
        first, second = await run_like_the_runner(sink, post_card(root))
    finally:
        await sink.stop()

    assert isinstance(first, RetriableError) and error.__name__ in str(first)
    [card] = cards(fake_slack, root)
    assert second == Effect(message_id=card["ts"])
    assert len(fake_slack.calls("chat.postMessage")) == 1  # the failed one never reached Slack
    # A connection that never opened cannot have posted: no need to look.
    assert len(fake_slack.calls("conversations.replies")) == lookups
    fake_slack.assert_no_violations()


async def test_in_a_thread_longer_than_the_scan_limit_the_card_is_found_after_the_mention(
    fake_slack: FakeSlack, quick_sink: SlackSink
) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "The checkout incident, a long story")
    for n in range(SlackSink.recovery_scan_limit + 50):
        await fake_slack.post_user_message(CHANNEL, f"update {n}", thread_ts=root)
    mention = await fake_slack.post_user_message(CHANNEL, "Is this PROJ-1 again?", thread_ts=root)
    fake_slack.fail_next("chat.postMessage", None, status=503, after_store=True)
    command = post_card(root, in_reply_to=mention)

    first, second = await run_like_the_runner(quick_sink, command)

    assert isinstance(first, RetriableError)
    assert len(fake_slack.thread(CHANNEL, root)) > SlackSink.recovery_scan_limit + 2
    [card] = cards(fake_slack, root)  # among the thread's newest messages, and found there
    assert second == Effect(message_id=card["ts"], recovered=True)
    assert len(fake_slack.calls("chat.postMessage")) == 1
    [lookup] = fake_slack.calls("conversations.replies")  # only what came after the mention
    assert lookup.params == {"channel": CHANNEL, "ts": root, "limit": "200", "oldest": mention}
    fake_slack.assert_no_violations()


async def test_a_lookup_that_fails_retriably_is_tried_again(fake_slack: FakeSlack, quick_sink: SlackSink) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "PROJ-1?")
    fake_slack.fail_next("chat.postMessage", None, status=503, after_store=True)
    fake_slack.fail_next("conversations.replies", None, status=503)

    outcomes = await run_like_the_runner(quick_sink, post_card(root))

    assert [type(o) for o in outcomes] == [RetriableError, RetriableError, Effect]
    [card] = cards(fake_slack, root)
    assert outcomes[-1] == Effect(message_id=card["ts"], recovered=True)
    assert len(fake_slack.calls("conversations.replies")) == 2
    fake_slack.assert_no_violations()


async def test_a_lookup_slack_refuses_for_good_posts_the_card_anyway(
    fake_slack: FakeSlack, quick_sink: SlackSink, caplog: pytest.LogCaptureFixture
) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "PROJ-1?")
    fake_slack.fail_next("chat.postMessage", None, status=503)
    fake_slack.fail_next("conversations.replies", "missing_scope")

    with caplog.at_level(logging.WARNING, logger="connectors.slack.sink"):
        first, second = await run_like_the_runner(quick_sink, post_card(root))

    assert isinstance(first, RetriableError)
    [card] = cards(fake_slack, root)
    assert second == Effect(message_id=card["ts"])  # a possible double beats a lost card
    assert "channels:history" in caplog.text


async def test_only_commands_whose_outcome_is_unknown_are_looked_for(
    fake_slack: FakeSlack, quick_sink: SlackSink
) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "PROJ-1?")
    fake_slack.fail_next("chat.postMessage", "ratelimited", status=429, retry_after=0)

    first, second = await run_like_the_runner(quick_sink, post_card(root))

    assert isinstance(first, BackpressureError)
    [card] = cards(fake_slack, root)
    assert second == Effect(message_id=card["ts"])
    assert fake_slack.calls("conversations.replies") == []  # Slack refused it: nothing to look for


async def test_the_memory_of_unsure_commands_is_bounded(fake_slack: FakeSlack) -> None:
    class SmallSink(SlackSink):
        unsure_limit = 2

    sink = SmallSink(SlackClient(make_config(api_base_url=fake_slack.api_url)), identity())
    root = await fake_slack.post_user_message(CHANNEL, "PROJ-1, PROJ-2 and PROJ-3?")
    commands = [post_card(root, key) for key in ("PROJ-1", "PROJ-2", "PROJ-3")]
    fake_slack.fail_next("chat.postMessage", None, status=503, times=3)
    try:
        for command in commands:
            with pytest.raises(RetriableError):
                await sink.execute(command, envelope(command))
        await sink.execute(commands[0], envelope(commands[0]))  # the oldest was forgotten: no lookup
        assert fake_slack.calls("conversations.replies") == []
        await sink.execute(commands[2], envelope(commands[2]))
        assert len(fake_slack.calls("conversations.replies")) == 1
    finally:
        await sink.stop()


# -- Slack's answers, scripted ------------------------------------------------------------


def scripted_sink(answer: Callable[[httpx.Request], httpx.Response], seen: list[httpx.Request]) -> SlackSink:
    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    client = SlackClient(make_config(api_base_url="https://slack.example/api"), transport=httpx.MockTransport(record))
    return SlackSink(client, identity())


def reply(ts: str, *, bot_id: str | None = BOT_ID, block_id: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "message", "ts": ts, "thread_ts": "1700000000.000100", "text": "PROJ-1"}
    if bot_id is not None:
        message["bot_id"] = bot_id
    if block_id is not None:
        message["blocks"] = [{"type": "section", "block_id": block_id, "text": {"type": "mrkdwn", "text": "x"}}]
    return message


async def test_the_lookup_pages_through_the_thread_and_trusts_only_threadlinks_cards() -> None:
    command = post_card("1700000000.000100")
    tag = card_block_id(command.command_id)
    pages = {
        None: {
            "ok": True,
            "messages": [
                reply("1700000000.000100", bot_id=None),
                reply("1700000001.000100", bot_id="B0OTHER", block_id=tag),
            ],
            "has_more": True,
            "response_metadata": {"next_cursor": "bmV4dF90czox"},
        },
        "bmV4dF90czox": {"ok": True, "messages": [reply("1700000002.000100", block_id=tag)], "has_more": False},
    }

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/chat.postMessage"):
            return httpx.Response(503)
        return httpx.Response(200, json=pages[request.url.params.get("cursor")])

    seen: list[httpx.Request] = []
    sink = scripted_sink(answer, seen)
    try:
        outcomes = await run_like_the_runner(sink, command)
    finally:
        await sink.stop()

    assert outcomes[-1] == Effect(message_id="1700000002.000100", recovered=True)
    lookup = {"channel": CHANNEL, "ts": "1700000000.000100", "limit": "200", "oldest": "1700000000.000100"}
    assert [(r.method, r.url.path.rsplit("/", 1)[1], dict(r.url.params)) for r in seen] == [
        ("POST", "chat.postMessage", {}),
        ("GET", "conversations.replies", lookup),
        ("GET", "conversations.replies", {**lookup, "cursor": "bmV4dF90czox"}),
    ]


async def test_a_mention_id_that_is_no_slack_ts_is_looked_for_from_the_root() -> None:
    command = post_card("1700000000.000100", in_reply_to="not-a-ts")

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/chat.postMessage"):
            return httpx.Response(503)
        card = reply("1700000003.000100", block_id=card_block_id(command.command_id))
        return httpx.Response(200, json={"ok": True, "messages": [card], "has_more": False})

    seen: list[httpx.Request] = []
    sink = scripted_sink(answer, seen)
    try:
        outcomes = await run_like_the_runner(sink, command)
    finally:
        await sink.stop()

    assert outcomes[-1] == Effect(message_id="1700000003.000100", recovered=True)
    assert "oldest" not in seen[1].url.params  # Slack would refuse it (invalid_ts_oldest)


async def test_ok_without_ts_is_fatal_and_a_replay_finds_the_card() -> None:
    command = post_card("1700000000.000100")

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/chat.postMessage"):
            return httpx.Response(200, json={"ok": True, "channel": CHANNEL})
        card = reply("1700000003.000100", block_id=card_block_id(command.command_id))
        return httpx.Response(200, json={"ok": True, "messages": [card], "has_more": False})

    seen: list[httpx.Request] = []
    sink = scripted_sink(answer, seen)
    try:
        with pytest.raises(FatalError, match=r"slack chat\.postMessage: .*without the message's ts") as caught:
            await run_like_the_runner(sink, command)  # fatal: not retried
        assert isinstance(caught.value, PostedWithoutTs) and caught.value.status == 200
        # A dead-letter replay in this process finds the card instead of posting a second one.
        replayed = await sink.execute(command, envelope(command))
    finally:
        await sink.stop()

    assert replayed == Effect(message_id="1700000003.000100", recovered=True)
    assert [r.url.path.rsplit("/", 1)[1] for r in seen] == ["chat.postMessage", "conversations.replies"]
    assert json.loads(dict(httpx.QueryParams(seen[0].content.decode()))["blocks"]) == card_blocks(
        RECORD, command.command_id
    )


def _transport_error(kind: type[httpx.TransportError]) -> RetriableError:
    cause = kind("injected", request=httpx.Request("POST", "https://slack.example/api/chat.postMessage"))
    try:
        raise classify_transport_error(cause, what="slack chat.postMessage") from cause
    except RetriableError as error:
        return error


def _answered(status: int, body: dict[str, Any] | None = None) -> ConnectorError:
    """The error `raise_for_slack` makes of Slack's answer."""
    response = httpx.Response(status, json=body) if body is not None else httpx.Response(status)
    try:
        raise_for_slack(response, method="chat.postMessage")
    except ConnectorError as error:
        return error
    raise AssertionError(f"{status} {body} is no error")


@pytest.mark.parametrize(
    ("error", "unknown"),
    [
        (_transport_error(httpx.ReadTimeout), True),
        (_transport_error(httpx.RemoteProtocolError), True),
        (_transport_error(httpx.WriteError), True),
        (_transport_error(httpx.ConnectError), False),
        (_transport_error(httpx.ConnectTimeout), False),
        (_transport_error(httpx.PoolTimeout), False),
        (_answered(503), True),
        (_answered(200, {"ok": False, "error": "internal_error"}), True),
        (_answered(200, {"ok": False, "error": "service_unavailable"}), True),
        (_answered(408), False),
        (_answered(429), False),
        (_answered(200, {"ok": False, "error": "ratelimited"}), False),
        (_answered(200, {"ok": False, "error": "invalid_auth"}), False),
        (_answered(200, {"ok": False, "error": "channel_not_found"}), False),
        (_answered(404), False),
        (PostedWithoutTs("slack chat.postMessage: no ts", status=200), True),
    ],
    ids=lambda value: str(value).rsplit(": ", 1)[-1].replace(" ", "-") if isinstance(value, Exception) else None,
)
def test_outcome_unknown(error: ConnectorError, unknown: bool) -> None:
    assert outcome_unknown(error) is unknown


def test_slacks_transient_answers_are_retriable_and_of_their_own_kind() -> None:
    error = _answered(200, {"ok": False, "error": "internal_error"})
    assert isinstance(error, TransientAnswer) and isinstance(error, RetriableError)
    assert not isinstance(error, BackpressureError)


async def test_fake_slack_keeps_block_ids_and_refuses_those_slack_would(fake_slack: FakeSlack) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "PROJ-1?")
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "x"}}
    refused = [
        [{**section, "block_id": "a"}, {**section, "block_id": "a"}],  # not unique in the message
        [{**section, "block_id": "x" * 256}],  # longer than 255
        [{**section, "block_id": ""}],
    ]
    async with httpx.AsyncClient(
        base_url=fake_slack.api_url + "/", headers={"Authorization": f"Bearer {BOT_TOKEN}"}
    ) as http:
        for blocks in refused:
            form = {"channel": CHANNEL, "text": "x", "thread_ts": root, "blocks": json.dumps(blocks)}
            assert (await http.post("chat.postMessage", data=form)).json() == {"ok": False, "error": "invalid_blocks"}
        kept = [{**section, "block_id": "tl-" + "x" * 252}]
        form = {"channel": CHANNEL, "text": "x", "thread_ts": root, "blocks": json.dumps(kept)}
        assert (await http.post("chat.postMessage", data=form)).json()["message"]["blocks"] == kept
        replies = (await http.get("conversations.replies", params={"channel": CHANNEL, "ts": root})).json()
    assert replies["messages"][-1]["blocks"] == kept
    fake_slack.assert_no_violations()


async def test_after_a_restart_the_runtimes_outcome_unknown_makes_the_sink_look_first(
    fake_slack: FakeSlack, quick_sink: SlackSink
) -> None:
    root = await fake_slack.post_user_message(CHANNEL, "PROJ-1 again")
    command = post_card(root)
    await quick_sink.execute(command, envelope(command))  # then the process died before the ledger heard
    restarted = SlackSink(SlackClient(make_config(api_base_url=fake_slack.api_url)), identity())
    await restarted.start()
    try:
        restarted.outcome_unknown(command.command_id)  # what SinkRunner does for an `attempted` entry
        effect = await restarted.execute(command, envelope(command))
    finally:
        await restarted.stop()
    [card] = cards(fake_slack, root)
    assert effect == Effect(message_id=card["ts"], recovered=True)
    fake_slack.assert_no_violations()
