"""The sink against the sandbox Jira on 127.0.0.1 (port 0): real HTTP, no Kafka."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from connectors.base import ConnectorContext
from connectors.errors import BackpressureError, FatalError, RetriableError, SkippableError
from connectors.jira.client import JiraClient
from connectors.jira.config import JiraConfig
from connectors.jira.sink import JiraSink
from sandbox.contracts.jira import JiraContract
from sandbox.jira_api import FakeJira
from schemas import events
from schemas.commands import AddComment, Command, FetchRecord, PostCard, command_id_for
from schemas.envelope import Envelope
from schemas.records import RecordMissing, RecordRef, TicketRecord
from schemas.social import ThreadRef
from schemas.topics import TopicNames
from schemas.trace import trace_id

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

    result = await sink.execute(command, envelope)

    assert result == {"found": True, "key": "OPS-1"}
    [published] = publisher.published
    assert (published.topic, published.key) == (topics.records, "jira:OPS-1")
    assert published.envelope.type == events.RECORD_UPSERTED
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
    [request] = fake_jira.requests
    assert (request.method, request.path) == ("GET", "/rest/api/3/issue/OPS-1")
    assert request.query == [("fields", "summary,status,assignee,priority,project,updated")]
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
    result = await sink.execute(*fetch("OPS-404"))
    assert result == {"found": False}
    [published] = publisher.published
    assert (published.topic, published.key) == (topics.records, "jira:OPS-404")
    assert published.envelope.type == events.RECORD_MISSING
    assert published.envelope.data == RecordMissing(ref=RecordRef(system="jira", key="OPS-404"), reason="not found")
    assert fake_jira.violations == []


async def test_something_that_is_no_issue_key_is_missing_without_a_request(
    sink: JiraSink, fake_jira: FakeJira, publisher: Any
) -> None:
    assert await sink.execute(*fetch("../../myself")) == {"found": False}
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

    result = await sink.execute(*add_comment())

    [stored] = fake_jira.comments("OPS-1")
    assert result == {"comment_id": stored["id"]}
    [request] = [r for r in fake_jira.requests if r.method == "POST"]
    assert request.path == "/rest/api/3/issue/OPS-1/comment"
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
    assert await sink.execute(*add_comment()) == {"skipped": "comment_backlinks disabled"}
    await sink.stop()
    assert fake_jira.requests == []


async def test_add_comment_on_a_missing_issue_is_skippable(sink: JiraSink) -> None:
    with pytest.raises(SkippableError):
        await sink.execute(*add_comment("OPS-404"))


async def test_other_commands_are_skippable(sink: JiraSink) -> None:
    record = TicketRecord(ref=RecordRef(system="jira", key="OPS-1"), title="x")
    command = PostCard(command_id="c1", target="jira", thread=THREAD, record=record, in_reply_to="1.2")
    with pytest.raises(SkippableError, match="jira cannot post_card"):
        await sink.execute(command, Envelope.wrap(command, type="t", source_system="streams"))


async def test_a_record_of_another_system_is_skippable(sink: JiraSink, fake_jira: FakeJira) -> None:
    command, envelope = fetch("OPS-1")
    command = command.model_copy(update={"record": RecordRef(system="zendesk", key="OPS-1")})
    with pytest.raises(SkippableError, match="zendesk"):
        await sink.execute(command, envelope)
    assert fake_jira.requests == []
