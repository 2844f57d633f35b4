"""The sink against the sandbox Jira on 127.0.0.1 (port 0): real HTTP, no Kafka."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from connectors.base import ConnectorContext
from connectors.errors import (
    BackpressureError,
    ConnectorError,
    FatalError,
    RetriableError,
    SkippableError,
)
from connectors.jira.client import JiraClient
from connectors.jira.config import JiraConfig
from connectors.jira.mapping import BACKLINK_PROPERTY
from connectors.jira.sink import JiraSink
from connectors.runtime.retry import RetryPolicy
from sandbox.contracts.jira import JiraContract
from sandbox.jira_api import FakeJira
from schemas import events
from schemas.commands import AddComment, Command, FetchRecord, PostCard, command_id_for
from schemas.envelope import Envelope
from schemas.outcomes import Effect
from schemas.records import DisplayField, RecordMissing, RecordRef, TicketRecord, version_of
from schemas.social import ThreadRef
from schemas.topics import TopicNames
from schemas.trace import trace_id

from .conftest import API_TOKEN

pytestmark = pytest.mark.unit

THREAD = ThreadRef(platform="slack", workspace="T01", channel="C01", thread_id="1700000000.000100")
PERMALINK = "https://acme.slack.com/archives/C01/p1700000000000100"


@pytest.fixture
async def sink(
    fake_jira: FakeJira, make_config: Callable[..., JiraConfig], ctx: ConnectorContext
) -> AsyncIterator[JiraSink]:
    sink = JiraSink(make_config(fake_jira.url), ctx)
    await sink.start()
    yield sink
    await sink.stop()


def fetch(key: str) -> tuple[FetchRecord, Envelope[Command]]:
    command = FetchRecord(
        command_id=command_id_for("fetch_record", key), target="jira", record=RecordRef(system="jira", key=key)
    )
    return command, Envelope.wrap(command, type=events.COMMAND.format(kind=command.kind), source_system="streams")


def add_comment(key: str = "OPS-1", **overrides: Any) -> tuple[AddComment, Envelope[Command]]:
    values: dict[str, Any] = {
        "command_id": command_id_for("add_comment", key, THREAD.id),
        "target": "jira",
        "record": RecordRef(system="jira", key=key),
        "thread": THREAD,
        "body": "Discussed in slack thread",
        "permalink": PERMALINK,
    }
    command = AddComment(**{**values, **overrides})
    return command, Envelope.wrap(command, type=events.COMMAND.format(kind=command.kind), source_system="streams")


async def test_fetch_record_found_publishes_the_ticket_record(
    sink: JiraSink, fake_jira: FakeJira, publisher: Any, topics: TopicNames
) -> None:
    await fake_jira.put_issue(
        "OPS-1", "Checkout is down", status="In Progress", assignee="Ada Lovelace", priority="High"
    )
    command, envelope = fetch("OPS-1")

    effect = await sink.execute(command, envelope)

    assert effect == Effect(found=True, url=f"{fake_jira.url}/browse/OPS-1")
    [published] = publisher.published
    assert (published.topic, published.key) == (topics.records, "jira:OPS-1")
    assert published.envelope.type == events.RECORD_UPSERTED.format(kind="ticket")
    assert published.envelope.id == f"jira:{command.command_id}"
    assert trace_id(published.envelope.traceparent) == trace_id(envelope.traceparent)
    record = published.envelope.data
    assert isinstance(record, TicketRecord)
    assert (record.title, record.status, record.assignee, record.priority, record.project) == (
        "Checkout is down",
        "In Progress",
        "Ada Lovelace",
        "High",
        "OPS",
    )
    assert record.url == f"{fake_jira.url}/browse/OPS-1"
    assert record.visibility == "restricted"
    # Versioned by Jira's update time, and showing what a ticket's card shows.
    assert record.updated_at is not None
    assert record.version == version_of(record.updated_at) > 0
    assert record.fields == [
        DisplayField(name="status", label="Status", value="In Progress"),
        DisplayField(name="assignee", label="Assignee", value="Ada Lovelace"),
        DisplayField(name="priority", label="Priority", value="High"),
    ]
    [request] = fake_jira.requests
    assert (request.method, request.path) == ("GET", "/rest/api/3/issue/OPS-1")
    assert request.query == [("fields", "summary,status,assignee,priority,project,labels,updated")]
    assert request.headers["Accept"] == "application/json"
    assert request.authenticated
    assert fake_jira.violations == []


async def test_a_key_jira_answers_differently_is_published_under_both(
    sink: JiraSink, fake_jira: FakeJira, publisher: Any
) -> None:
    await fake_jira.put_issue("OPS-2", "Lower-case mention")
    await sink.execute(*fetch("ops-2"))
    assert [p.key for p in publisher.published] == ["jira:OPS-2", "jira:ops-2"]
    assert len({p.envelope.id for p in publisher.published}) == 2


async def test_unknown_issue_publishes_record_missing(
    sink: JiraSink, fake_jira: FakeJira, publisher: Any, topics: TopicNames
) -> None:
    effect = await sink.execute(*fetch("OPS-404"))
    assert effect == Effect(found=False)
    [published] = publisher.published
    assert (published.topic, published.key) == (topics.records, "jira:OPS-404")
    assert published.envelope.type == events.RECORD_MISSING
    # A look-up that found nothing has no deletion time: version 0.
    assert published.envelope.data == RecordMissing(
        ref=RecordRef(system="jira", key="OPS-404"), reason="not found", version=0
    )
    assert fake_jira.violations == []


async def test_something_that_is_no_issue_key_is_missing_without_a_request(
    sink: JiraSink, fake_jira: FakeJira, publisher: Any
) -> None:
    assert await sink.execute(*fetch("../../myself")) == Effect(found=False)
    assert publisher.published[0].envelope.data.reason == "not found"
    assert fake_jira.requests == []


async def test_wrong_credentials_are_fatal(
    fake_jira: FakeJira, make_config: Callable[..., JiraConfig], ctx: ConnectorContext, publisher: Any
) -> None:
    sink = JiraSink(make_config(fake_jira.url, api_token="wrong-token"), ctx)
    await fake_jira.put_issue("OPS-1", "Checkout is down")
    with pytest.raises(FatalError) as caught:
        await sink.execute(*fetch("OPS-1"))
    await sink.stop()
    assert caught.value.status == 401
    assert "wrong-token" not in str(caught.value)
    assert publisher.published == []


async def test_rate_limit_is_backpressure_with_retry_after(sink: JiraSink, fake_jira: FakeJira) -> None:
    await fake_jira.put_issue("OPS-1", "Checkout is down")
    fake_jira.fail_next(429, retry_after=7)
    with pytest.raises(BackpressureError) as caught:
        await sink.execute(*fetch("OPS-1"))
    assert caught.value.retry_after == 7.0
    assert caught.value.status == 429


async def test_server_error_is_retriable(sink: JiraSink, fake_jira: FakeJira) -> None:
    fake_jira.fail_next(503)
    with pytest.raises(RetriableError) as caught:
        await sink.execute(*fetch("OPS-1"))
    assert not isinstance(caught.value, BackpressureError)


async def test_transport_error_is_retriable(config: JiraConfig, ctx: ConnectorContext) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    sink = JiraSink(config, ctx, JiraClient(config, transport=httpx.MockTransport(refuse)))
    with pytest.raises(RetriableError, match="ConnectError"):
        await sink.execute(*fetch("OPS-1"))
    await sink.stop()


async def test_add_comment_posts_a_spec_valid_adf_backlink(
    sink: JiraSink, fake_jira: FakeJira, contract: JiraContract
) -> None:
    await fake_jira.put_issue("OPS-1", "Checkout is down")

    command, envelope = add_comment()
    effect = await sink.execute(command, envelope)

    [stored] = fake_jira.comments("OPS-1")
    assert effect == Effect(comment_id=stored["id"])
    # A first attempt posts without looking first (after linking the issue to the thread).
    link_request, request = fake_jira.requests
    assert (link_request.method, link_request.path) == ("POST", "/rest/api/3/issue/OPS-1/remotelink")
    assert (request.method, request.path) == ("POST", "/rest/api/3/issue/OPS-1/comment")
    # Tagged with its command, so a retry after a lost answer can find it.
    tag = {"key": BACKLINK_PROPERTY, "value": {"command_id": command.command_id}}
    assert request.json["properties"] == [tag]
    assert fake_jira.comment_properties(stored["id"]) == {BACKLINK_PROPERTY: {"command_id": command.command_id}}
    assert request.headers["Content-Type"].startswith("application/json")
    body = request.json["body"]
    assert body["type"] == "doc"
    link = body["content"][0]["content"][1]
    assert link["marks"] == [{"type": "link", "attrs": {"href": PERMALINK}}]
    assert body["content"][0]["content"][0] == {"type": "text", "text": "Discussed in slack thread "}
    assert fake_jira.violations == []
    # And independently of the fake's bookkeeping:
    assert contract.check_request("POST", request.path, body=request.json) == []


async def test_add_comment_is_skipped_when_backlinks_are_disabled(
    fake_jira: FakeJira, make_config: Callable[..., JiraConfig], ctx: ConnectorContext
) -> None:
    sink = JiraSink(make_config(fake_jira.url, comment_backlinks=False), ctx)
    assert await sink.execute(*add_comment()) == Effect(skipped="comment_backlinks disabled")
    await sink.stop()
    assert fake_jira.requests == []


async def test_add_comment_on_a_missing_issue_is_skippable(sink: JiraSink) -> None:
    with pytest.raises(SkippableError):
        await sink.execute(*add_comment("OPS-404"))


async def test_other_commands_are_skippable(sink: JiraSink) -> None:
    record = TicketRecord(ref=RecordRef(system="jira", key="OPS-1"), title="x")
    command = PostCard(command_id="c1", target="jira", destination=THREAD, record=record, in_reply_to="1.2")
    with pytest.raises(SkippableError, match="jira cannot post_card"):
        await sink.execute(command, Envelope.wrap(command, type="t", source_system="streams"))


async def test_a_record_of_another_system_is_skippable(sink: JiraSink, fake_jira: FakeJira) -> None:
    command, envelope = fetch("OPS-1")
    command = command.model_copy(update={"record": RecordRef(system="zendesk", key="OPS-1")})
    with pytest.raises(SkippableError, match="zendesk"):
        await sink.execute(command, envelope)
    assert fake_jira.requests == []


# -- a back-link is posted once, even when Jira's answer is lost ------------------------------

#: The runner's retry policy, with backoffs small enough for a unit test.
TINY_RETRIES = RetryPolicy(max_attempts=4, max_total_s=10, initial_backoff_s=0.001, max_backoff_s=0.005)
#: The client's timeout in these tests; FakeJira holds answers back far longer (until it stops).
CLIENT_TIMEOUT_S = 0.2
COMMENTS = "/rest/api/3/issue/OPS-1/comment"


async def run_like_the_runner(sink: JiraSink, command: Command, envelope: Envelope[Command]) -> list[Any]:
    """Execute through RetryPolicy.call as SinkRunner does; the outcome of each attempt in order
    (an exception, or the last one's Effect)."""
    outcomes: list[Any] = []

    async def attempt() -> Effect:
        try:
            result = await sink.execute(command, envelope)
        except ConnectorError as exc:
            outcomes.append(exc)
            raise
        outcomes.append(result)
        return result

    await TINY_RETRIES.call(attempt)
    return outcomes


def posts(fake: FakeJira) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST" and r.path == COMMENTS]


def listings(fake: FakeJira) -> list[Any]:
    return [r for r in fake.requests if r.method == "GET" and r.path == COMMENTS]


@pytest.fixture
async def quick_sink(
    fake_jira: FakeJira, make_config: Callable[..., JiraConfig], ctx: ConnectorContext
) -> AsyncIterator[JiraSink]:
    """A sink whose client gives up after CLIENT_TIMEOUT_S."""
    sink = JiraSink(make_config(fake_jira.url, request_timeout_s=CLIENT_TIMEOUT_S), ctx)
    await sink.start()
    yield sink
    await sink.stop()


@pytest.mark.parametrize(
    ("fault", "error"),
    [({"delay_s": 0}, "HTTP 503"), ({"delay_s": 30}, "ReadTimeout")],
    ids=["answered-503", "timed-out"],
)
async def test_a_comment_jira_stored_despite_the_failure_is_recovered_not_posted_again(
    quick_sink: JiraSink, fake_jira: FakeJira, fault: dict[str, Any], error: str
) -> None:
    await fake_jira.put_issue("OPS-1", "Checkout is down")
    fake_jira.fail_next(503, path_prefix=COMMENTS, after_store=True, **fault)
    command, envelope = add_comment()

    first, second = await run_like_the_runner(quick_sink, command, envelope)

    assert isinstance(first, RetriableError)
    assert error in str(first)
    [stored] = fake_jira.comments("OPS-1")  # exactly one back-link on the issue
    assert second == Effect(comment_id=stored["id"], recovered=True)
    assert len(posts(fake_jira)) == 1  # the retry looked, found it, and posted nothing
    [listing] = listings(fake_jira)
    assert dict(listing.query) == {"startAt": "0", "maxResults": "100", "orderBy": "-created", "expand": "properties"}
    fake_jira.assert_no_violations()


@pytest.mark.parametrize(
    ("fault", "error"),
    [({"delay_s": 0}, "HTTP 503"), ({"delay_s": 30}, "ReadTimeout")],
    ids=["answered-503", "timed-out"],
)
async def test_a_comment_jira_did_not_store_is_posted_exactly_once_by_the_retry(
    quick_sink: JiraSink, fake_jira: FakeJira, fault: dict[str, Any], error: str
) -> None:
    await fake_jira.put_issue("OPS-1", "Checkout is down")
    fake_jira.fail_next(503, path_prefix=COMMENTS, **fault)
    command, envelope = add_comment()

    first, second = await run_like_the_runner(quick_sink, command, envelope)

    assert isinstance(first, RetriableError)
    assert error in str(first)
    [stored] = fake_jira.comments("OPS-1")
    assert second == Effect(comment_id=stored["id"])
    assert len(posts(fake_jira)) == 2
    assert len(listings(fake_jira)) == 1  # looked first, found nothing, posted
    assert fake_jira.comment_properties(stored["id"]) == {BACKLINK_PROPERTY: {"command_id": command.command_id}}
    fake_jira.assert_no_violations()


async def test_a_refused_connection_is_posted_again_without_looking(config: JiraConfig, ctx: ConnectorContext) -> None:
    config = config.model_copy(update={"remote_links": False})  # the comment's calls only
    seen: list[tuple[str, str]] = []

    def jira(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        if len(seen) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(201, json={"id": "10000"})

    sink = JiraSink(config, ctx, JiraClient(config, transport=httpx.MockTransport(jira)))
    outcomes = await run_like_the_runner(sink, *add_comment())
    await sink.stop()
    assert outcomes[-1] == Effect(comment_id="10000")
    assert seen == [("POST", COMMENTS), ("POST", COMMENTS)]


async def test_recovery_pages_through_comments_added_since(quick_sink: JiraSink, fake_jira: FakeJira) -> None:
    await fake_jira.put_issue("OPS-1", "Checkout is down")
    fake_jira.comments_page_limit = 2  # Jira answers fewer than asked: the client follows startAt
    fake_jira.fail_next(503, path_prefix=COMMENTS, after_store=True)
    command, envelope = add_comment()
    with pytest.raises(RetriableError):
        await quick_sink.execute(command, envelope)
    for n in range(5):  # other comments, newer than the back-link
        await quick_sink.execute(add_comment(body=f"other {n}", command_id=f"other-{n}")[0], envelope)

    result = await quick_sink.execute(command, envelope)

    tag = {BACKLINK_PROPERTY: {"command_id": command.command_id}}
    [backlink] = [c for c in fake_jira.comments("OPS-1") if fake_jira.comment_properties(c["id"]) == tag]
    assert result == Effect(comment_id=backlink["id"], recovered=True)
    assert len(fake_jira.comments("OPS-1")) == 6
    assert [dict(r.query)["startAt"] for r in listings(fake_jira)] == ["0", "2", "4"]
    fake_jira.assert_no_violations()


async def test_recovery_reads_properties_by_id_when_the_listing_leaves_them_out(
    quick_sink: JiraSink, fake_jira: FakeJira
) -> None:
    await fake_jira.put_issue("OPS-1", "Checkout is down")
    fake_jira.comment_list_expands_properties = False
    fake_jira.fail_next(503, path_prefix=COMMENTS, after_store=True)
    command, envelope = add_comment()

    first, second = await run_like_the_runner(quick_sink, command, envelope)

    assert isinstance(first, RetriableError)
    [stored] = fake_jira.comments("OPS-1")
    assert second == Effect(comment_id=stored["id"], recovered=True)
    [by_id] = [r for r in fake_jira.requests if r.path == "/rest/api/3/comment/list"]
    assert by_id.query == [("expand", "properties")]
    assert by_id.json == {"ids": [int(stored["id"])]}
    fake_jira.assert_no_violations()


async def test_recovery_looks_only_at_the_newest_comments_then_posts(quick_sink: JiraSink, fake_jira: FakeJira) -> None:
    await fake_jira.put_issue("OPS-1", "Checkout is down")
    quick_sink.recovery_scan_limit = 3
    fake_jira.fail_next(503, path_prefix=COMMENTS, after_store=True)
    command, envelope = add_comment()
    with pytest.raises(RetriableError):
        await quick_sink.execute(command, envelope)
    for n in range(3):
        await quick_sink.execute(add_comment(body=f"other {n}", command_id=f"other-{n}")[0], envelope)

    result = await quick_sink.execute(command, envelope)

    # Past the bound a double is preferred to a loss; the search asked for no more than the bound.
    assert result.recovered is False
    newest = max(fake_jira.comments("OPS-1"), key=lambda c: int(c["id"]))
    assert result == Effect(comment_id=newest["id"])
    assert len(fake_jira.comments("OPS-1")) == 5
    assert sum(int(dict(r.query)["maxResults"]) for r in listings(fake_jira)) == 3
    fake_jira.assert_no_violations()


async def test_a_lookup_that_fails_retriably_is_tried_again(quick_sink: JiraSink, fake_jira: FakeJira) -> None:
    await fake_jira.put_issue("OPS-1", "Checkout is down")
    fake_jira.fail_next(503, path_prefix=COMMENTS, after_store=True)  # stored, answered 503
    fake_jira.fail_next(503, path_prefix=COMMENTS)  # the first lookup
    command, envelope = add_comment()

    outcomes = await run_like_the_runner(quick_sink, command, envelope)

    assert [type(o) for o in outcomes] == [RetriableError, RetriableError, Effect]
    [stored] = fake_jira.comments("OPS-1")
    assert outcomes[-1] == Effect(comment_id=stored["id"], recovered=True)
    assert (len(posts(fake_jira)), len(listings(fake_jira))) == (1, 2)
    fake_jira.assert_no_violations()


@pytest.mark.parametrize("status", [403, 401, 400])
async def test_a_lookup_jira_refuses_for_good_posts_the_backlink_anyway(
    quick_sink: JiraSink, fake_jira: FakeJira, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    await fake_jira.put_issue("OPS-1", "Checkout is down")
    fake_jira.fail_next(503, path_prefix=COMMENTS)  # not stored, but the sink cannot know
    fake_jira.fail_next(status, path_prefix=COMMENTS)  # listing the comments is refused
    command, envelope = add_comment()

    with caplog.at_level(logging.WARNING, logger="connectors.jira.sink"):
        first, second = await run_like_the_runner(quick_sink, command, envelope)

    assert isinstance(first, RetriableError)
    [stored] = fake_jira.comments("OPS-1")
    assert second == Effect(comment_id=stored["id"])  # a possible double beats a lost back-link
    assert (len(posts(fake_jira)), len(listings(fake_jira))) == (2, 1)
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert command.command_id in warning.getMessage() and f"HTTP {status}" in warning.getMessage()
    assert API_TOKEN not in caplog.text and quick_sink.config.api_token.get_secret_value() not in caplog.text
    fake_jira.assert_no_violations()


async def test_the_commands_remembered_as_unsure_are_bounded(
    config: JiraConfig, ctx: ConnectorContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = config.model_copy(update={"remote_links": False})  # the comment's calls only
    seen: list[str] = []

    def jira(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        if request.method == "POST":
            raise httpx.ReadTimeout("no answer", request=request)
        return httpx.Response(200, json={"startAt": 0, "maxResults": 100, "total": 0, "comments": []})

    monkeypatch.setattr(JiraSink, "unsure_limit", 2)
    sink = JiraSink(config, ctx, JiraClient(config, transport=httpx.MockTransport(jira)))
    commands = [add_comment(command_id=f"c{n}") for n in range(3)]
    for command in commands:
        with pytest.raises(RetriableError):
            await sink.execute(*command)
    assert seen == ["POST"] * 3

    seen.clear()
    with pytest.raises(RetriableError):
        await sink.execute(*commands[0])  # forgotten: the oldest went first
    assert seen == ["POST"]
    seen.clear()
    with pytest.raises(RetriableError):
        await sink.execute(*commands[2])
    assert seen == ["GET", "POST"]
    await sink.stop()


async def test_after_a_restart_the_runtimes_outcome_unknown_makes_the_sink_look_first(
    sink: JiraSink, fake_jira: FakeJira, make_config: Callable[..., JiraConfig], ctx: ConnectorContext
) -> None:
    await fake_jira.put_issue("OPS-1", "Checkout is down")
    command, envelope = add_comment()
    await sink.execute(command, envelope)  # then the process died before the ledger heard
    restarted = JiraSink(make_config(fake_jira.url), ctx)
    await restarted.start()
    try:
        restarted.outcome_unknown(command.command_id)  # what SinkRunner does for an `attempted` entry
        effect = await restarted.execute(command, envelope)
    finally:
        await restarted.stop()
    [stored] = fake_jira.comments("OPS-1")
    assert effect == Effect(comment_id=stored["id"], recovered=True)
    assert len(fake_jira.comments("OPS-1")) == 1
    fake_jira.assert_no_violations()
