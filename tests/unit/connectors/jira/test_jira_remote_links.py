"""The sink against the sandbox Jira: a back-link also links the issue to its thread (one remote
issue link per thread, whatever the retries), and text goes out as Markdown made ADF."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from connectors.base import ConnectorContext
from connectors.errors import FatalError, RetriableError
from connectors.jira.adf import adf_to_markdown
from connectors.jira.config import JiraConfig
from connectors.jira.mapping import remote_link_global_id
from connectors.jira.sink import JiraSink
from sandbox.contracts.jira import JiraContract, adf_problems
from sandbox.jira_api import FakeJira
from schemas import events
from schemas.commands import Command, CreateTicket, command_id_for
from schemas.envelope import Envelope
from schemas.outcomes import Effect

from .test_jira_sink import COMMENTS, PERMALINK, THREAD, add_comment, run_like_the_runner

pytestmark = pytest.mark.unit

REMOTE_LINKS = "/rest/api/3/issue/OPS-1/remotelink"


@pytest.fixture
def sink_with(
    fake_jira: FakeJira, make_config: Callable[..., JiraConfig], ctx: ConnectorContext
) -> Callable[..., JiraSink]:
    def make(**overrides: Any) -> JiraSink:
        return JiraSink(make_config(fake_jira.url, request_timeout_s=0.2, **overrides), ctx)

    return make


@pytest.fixture
async def sink(sink_with: Callable[..., JiraSink]) -> AsyncIterator[JiraSink]:
    sink = sink_with()
    await sink.start()
    yield sink
    await sink.stop()


def link_posts(fake: FakeJira) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST" and r.path == REMOTE_LINKS]


async def test_a_backlink_links_the_issue_to_the_thread(
    sink: JiraSink, fake_jira: FakeJira, contract: JiraContract
) -> None:
    await fake_jira.put_issue("OPS-1", "Checkout is down")

    effect = await sink.execute(*add_comment())

    [stored] = fake_jira.comments("OPS-1")
    assert effect == Effect(comment_id=stored["id"])
    [link] = fake_jira.remote_links("OPS-1")
    assert link["globalId"] == remote_link_global_id(THREAD)
    assert link["object"] == {"url": PERMALINK, "title": "Slack thread in C01", "summary": "Discussed in slack thread"}
    assert link["application"] == {"type": "io.threadlink", "name": "threadlink"}
    [request] = link_posts(fake_jira)
    assert contract.check_request("POST", request.path, body=request.json) == []  # not only the fake's word
    fake_jira.assert_no_violations()


async def test_a_retry_and_a_second_mention_update_the_one_link(sink: JiraSink, fake_jira: FakeJira) -> None:
    await fake_jira.put_issue("OPS-1", "Checkout is down")
    # Jira stores the comment but the answer is lost: the runner retries the whole command.
    fake_jira.fail_next(503, path_prefix=COMMENTS, after_store=True)

    first, second = await run_like_the_runner(sink, *add_comment())
    third = await sink.execute(*add_comment(command_id="another-mention", body="Mentioned again"))

    assert isinstance(first, RetriableError)
    assert second.recovered and len(fake_jira.comments("OPS-1")) == 2  # the retry's, then the new mention's
    assert len(link_posts(fake_jira)) == 3  # each attempt upserted...
    [link] = fake_jira.remote_links("OPS-1")  # ...the one link, by its globalId
    assert link["object"]["summary"] == "Mentioned again"
    assert third.comment_id is not None
    fake_jira.assert_no_violations()


async def test_a_link_that_fails_retriably_is_tried_again_before_any_comment(
    sink: JiraSink, fake_jira: FakeJira
) -> None:
    await fake_jira.put_issue("OPS-1", "Checkout is down")
    fake_jira.fail_next(502, path_prefix=REMOTE_LINKS)

    first, second = await run_like_the_runner(sink, *add_comment())

    assert isinstance(first, RetriableError)
    assert isinstance(second, Effect) and second.comment_id is not None
    assert len(fake_jira.comments("OPS-1")) == 1  # the failed link posted no comment to repeat
    assert len(fake_jira.remote_links("OPS-1")) == 1


async def test_a_link_jira_refuses_for_good_leaves_the_comment_going_out(
    sink: JiraSink, fake_jira: FakeJira, caplog: pytest.LogCaptureFixture
) -> None:
    await fake_jira.put_issue("OPS-1", "Checkout is down")
    fake_jira.fail_next(403, path_prefix=REMOTE_LINKS)

    with caplog.at_level(logging.WARNING, logger="connectors.jira.sink"):
        effect = await sink.execute(*add_comment())

    assert effect.comment_id is not None and len(fake_jira.comments("OPS-1")) == 1
    assert fake_jira.remote_links("OPS-1") == []
    assert "remote_links: false" in caplog.text


async def test_refused_credentials_on_the_link_are_fatal(sink: JiraSink, fake_jira: FakeJira) -> None:
    await fake_jira.put_issue("OPS-1", "Checkout is down")
    fake_jira.fail_next(401, path_prefix=REMOTE_LINKS)

    with pytest.raises(FatalError, match="HTTP 401"):
        await sink.execute(*add_comment())
    assert fake_jira.comments("OPS-1") == []


@pytest.mark.parametrize(
    ("overrides", "config"),
    [
        ({"permalink": None}, {}),
        ({"thread": None, "permalink": None}, {}),  # a private place: not named, not linked
        ({"permalink": "javascript:alert(1)"}, {}),
        ({}, {"remote_links": False}),
    ],
    ids=["no-permalink", "private-place", "not-http", "disabled"],
)
async def test_no_link_without_an_address_or_when_disabled(
    sink_with: Callable[..., JiraSink], fake_jira: FakeJira, overrides: dict[str, Any], config: dict[str, Any]
) -> None:
    await fake_jira.put_issue("OPS-1", "Checkout is down")
    sink = sink_with(**config)
    try:
        await sink.execute(*add_comment(**overrides))
    finally:
        await sink.stop()
    assert link_posts(fake_jira) == []
    assert len(fake_jira.comments("OPS-1")) == 1


async def test_a_threads_markdown_survives_into_the_comment(sink: JiraSink, fake_jira: FakeJira) -> None:
    await fake_jira.put_issue("OPS-1", "Checkout is down")
    words = "alice (slack): the **payment** gateway, see [runbook](https://r.example/pay) and run `make fix`"

    await sink.execute(*add_comment(body=words, permalink=None, thread=None))

    [stored] = fake_jira.comments("OPS-1")
    assert adf_problems(stored["body"]) == []
    assert adf_to_markdown(stored["body"]) == words
    fake_jira.assert_no_violations()


async def test_the_escalated_transcript_keeps_its_lines_and_marks(sink: JiraSink, fake_jira: FakeJira) -> None:
    await fake_jira.put_issue("OPS-1", "Existing")
    command = CreateTicket(
        command_id=command_id_for("create_ticket", THREAD.id, 1),
        target="jira",
        thread=THREAD,
        project="OPS",
        summary="Checkout is down",
        description="Opened from a slack thread by alice.\n\nalice: it is *down*\nbob: try `make fix`",
    )
    envelope: Envelope[Command] = Envelope.wrap(
        command, type=events.COMMAND.format(kind=command.kind), source_system="streams"
    )

    effect = await sink.execute(command, envelope)

    assert effect.created is not None
    issue = fake_jira.issue(effect.created.key)
    assert issue is not None
    description = issue["fields"]["description"]
    assert adf_problems(description) == []
    first, second = description["content"]
    assert first["content"] == [{"type": "text", "text": "Opened from a slack thread by alice."}]
    assert second["content"] == [
        {"type": "text", "text": "alice: it is "},
        {"type": "text", "text": "down", "marks": [{"type": "em"}]},
        {"type": "hardBreak"},
        {"type": "text", "text": "bob: try "},
        {"type": "text", "text": "make fix", "marks": [{"type": "code"}]},
    ]
    fake_jira.assert_no_violations()


async def test_a_threads_ticket_records_its_thread_in_an_issue_property_and_is_found_again(
    sink: JiraSink, fake_jira: FakeJira
) -> None:
    command = CreateTicket(
        command_id=command_id_for("create_ticket", THREAD.id, 1),
        target="jira",
        thread=THREAD,
        project="OPS",
        summary="Checkout is down",
    )
    envelope: Envelope[Command] = Envelope.wrap(
        command, type=events.COMMAND.format(kind=command.kind), source_system="streams"
    )
    first = await sink.execute(command, envelope)
    assert first.created is not None and not first.recovered
    recorded = fake_jira.issue_properties(first.created.key)["threadlink"]
    assert recorded["thread"] == THREAD.id and recorded["command_id"] == command.command_id
    again = await sink.execute(command, envelope)  # a retry after a lost answer
    assert again.created == first.created and again.recovered
    assert fake_jira.created == [first.created.key]
    fake_jira.assert_no_violations()
