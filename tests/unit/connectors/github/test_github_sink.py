"""The sink against FakeGitHub on 127.0.0.1 (port 0): real HTTP, no Kafka. FakeGitHub checks
every request it gets against GitHub's OpenAPI description (the fixture asserts no violation)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from connectors.base import ConnectorContext
from connectors.errors import AuthError, BackpressureError, FatalError, RetriableError, SkippableError
from connectors.github.config import GitHubConfig
from connectors.github.mapping import marker, thread_label
from connectors.github.sink import GitHubSink
from sandbox.github_api import FakeGitHub
from schemas import events
from schemas.commands import AddComment, Command, CreateTicket, FetchRecord, PostMessage, command_id_for
from schemas.envelope import Envelope
from schemas.records import RecordMissing, RecordRef, TicketRecord
from schemas.social import ThreadRef
from schemas.topics import TopicNames
from tests.unit.connectors.recording import RecordingPublisher

pytestmark = pytest.mark.unit

THREAD = ThreadRef(platform="slack", workspace="T01", channel="C01", thread_id="1700000000.000100")
PERMALINK = "https://acme.slack.com/archives/C01/p1700000000000100"


@pytest.fixture
async def sink(
    fake_github: FakeGitHub, make_config: Callable[..., GitHubConfig], ctx: ConnectorContext
) -> AsyncIterator[GitHubSink]:
    sink = GitHubSink(make_config(fake_github.url), ctx)
    await sink.start()
    yield sink
    await sink.stop()


def wrap(command: Command) -> Envelope[Command]:
    return Envelope.wrap(command, type=events.COMMAND.format(kind=command.kind), source_system="streams")


def fetch(key: str, system: str = "github") -> FetchRecord:
    return FetchRecord(
        command_id=command_id_for("fetch_record", key), target="github", record=RecordRef(system=system, key=key)
    )


def comment(key: str = "acme/shop#1", **overrides: Any) -> AddComment:
    values: dict[str, Any] = {
        "command_id": command_id_for("add_comment", key, THREAD.id),
        "target": "github",
        "record": RecordRef(system="github", key=key),
        "thread": THREAD,
        "body": "Discussed in a Slack thread",
        "permalink": PERMALINK,
    }
    return AddComment(**{**values, **overrides})


def create(project: str = "acme/shop") -> CreateTicket:
    return CreateTicket(
        command_id=command_id_for("create_ticket", THREAD.id),
        target="github",
        thread=THREAD,
        project=project,
        summary="Checkout fails   at payment",
        description="Ada (slack): checkout fails\nGrace (slack): since 10:00",
    )


# -- FetchRecord --------------------------------------------------------------------------------


async def test_fetch_record_found_publishes_the_ticket_record(
    sink: GitHubSink, fake_github: FakeGitHub, publisher: RecordingPublisher, topics: TopicNames
) -> None:
    await fake_github.put_issue("acme/shop", "Checkout is down", assignee="ada", labels=["bug"])
    effect = await sink.execute(fetch("acme/shop#1"), wrap(fetch("acme/shop#1")))
    assert effect.found is True and effect.url == "https://github.com/acme/shop/issues/1"
    (sent,) = publisher.published
    assert (sent.topic, sent.key) == (topics.records, "github:acme/shop#1")
    record = sent.envelope.data
    assert isinstance(record, TicketRecord) and (record.title, record.assignee, record.labels) == (
        "Checkout is down",
        "ada",
        ["bug"],
    )
    assert sent.envelope.id == f"github:{fetch('acme/shop#1').command_id}"


async def test_fetch_record_not_found_publishes_missing(sink: GitHubSink, publisher: RecordingPublisher) -> None:
    effect = await sink.execute(fetch("acme/shop#404"), wrap(fetch("acme/shop#404")))
    assert effect.found is False
    missing = publisher.published[0].envelope.data
    assert isinstance(missing, RecordMissing) and missing.reason == "not found"


async def test_fetch_record_with_a_hostile_key_makes_no_call_and_publishes_missing(
    sink: GitHubSink, fake_github: FakeGitHub, publisher: RecordingPublisher
) -> None:
    effect = await sink.execute(fetch("../../user#1"), wrap(fetch("../../user#1")))
    assert effect.found is False and fake_github.requests == []
    assert "not a GitHub issue key" in publisher.published[0].envelope.data.reason


async def test_fetch_record_of_a_transferred_issue_follows_the_redirect_and_aliases(
    sink: GitHubSink, fake_github: FakeGitHub, publisher: RecordingPublisher
) -> None:
    await fake_github.put_issue("acme/shop", "Belongs to the website")
    fake_github.transfer_issue("acme/shop", 1, "acme/website")
    await sink.execute(fetch("acme/shop#1"), wrap(fetch("acme/shop#1")))
    keys = [p.envelope.data.ref.key for p in publisher.published]
    assert keys == ["acme/website#1", "acme/shop#1"]


async def test_fetch_record_gone_410_publishes_missing(
    sink: GitHubSink, fake_github: FakeGitHub, publisher: RecordingPublisher
) -> None:
    fake_github.fail_next(410)
    effect = await sink.execute(fetch("acme/shop#1"), wrap(fetch("acme/shop#1")))
    assert effect.found is False and publisher.published[0].envelope.data.reason == "gone"


async def test_fetch_record_of_another_system_is_skipped(sink: GitHubSink, fake_github: FakeGitHub) -> None:
    with pytest.raises(SkippableError, match="belongs to 'jira'"):
        await sink.execute(fetch("OPS-1", system="jira"), wrap(fetch("OPS-1", system="jira")))
    assert fake_github.requests == []


async def test_fetch_record_primary_rate_limit_is_backpressure_not_a_credential_failure(
    sink: GitHubSink, fake_github: FakeGitHub
) -> None:
    fake_github.fail_next(403, rate_limit_reset_in=30)
    with pytest.raises(BackpressureError) as caught:
        await sink.execute(fetch("acme/shop#1"), wrap(fetch("acme/shop#1")))
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 31


async def test_fetch_record_secondary_rate_limit_429_honours_retry_after(
    sink: GitHubSink, fake_github: FakeGitHub
) -> None:
    fake_github.fail_next(429, retry_after=7)
    with pytest.raises(BackpressureError) as caught:
        await sink.execute(fetch("acme/shop#1"), wrap(fetch("acme/shop#1")))
    assert caught.value.retry_after == 7


async def test_bad_credential_401_is_fatal_auth_error(
    fake_github: FakeGitHub, make_config: Callable[..., GitHubConfig], ctx: ConnectorContext
) -> None:
    sink = GitHubSink(make_config(fake_github.url, token="github_pat_revoked"), ctx)
    try:
        with pytest.raises(AuthError) as caught:
            await sink.execute(fetch("acme/shop#1"), wrap(fetch("acme/shop#1")))
    finally:
        await sink.stop()
    assert "github_pat_revoked" not in str(caught.value)


# -- AddComment ---------------------------------------------------------------------------------


async def test_add_comment_posts_the_backlink_with_its_marker(sink: GitHubSink, fake_github: FakeGitHub) -> None:
    await fake_github.put_issue("acme/shop", "Checkout is down")
    effect = await sink.execute(comment(), wrap(comment()))
    (stored,) = fake_github.comments("acme/shop", 1)
    assert effect.comment_id == str(stored["id"])
    assert stored["body"].startswith(f"Discussed in a Slack thread [{PERMALINK}]({PERMALINK})")
    assert marker("command", comment().command_id) in stored["body"]


async def test_add_comment_after_a_lost_answer_finds_the_stored_comment_instead_of_posting_twice(
    sink: GitHubSink, fake_github: FakeGitHub
) -> None:
    await fake_github.put_issue("acme/shop", "Checkout is down")
    fake_github.fail_next(502, after_store=True, method="POST")
    with pytest.raises(RetriableError):
        await sink.execute(comment(), wrap(comment()))
    effect = await sink.execute(comment(), wrap(comment()))  # the runtime's retry
    assert effect.recovered and len(fake_github.comments("acme/shop", 1)) == 1


async def test_add_comment_the_ledger_says_was_attempted_is_looked_for_first(
    sink: GitHubSink, fake_github: FakeGitHub
) -> None:
    await fake_github.put_issue("acme/shop", "Checkout is down")
    await sink.execute(comment(), wrap(comment()))
    sink.outcome_unknown(comment().command_id)  # a restart found it attempted, not done
    effect = await sink.execute(comment(), wrap(comment()))
    assert effect.recovered and len(fake_github.comments("acme/shop", 1)) == 1


async def test_add_comment_422_is_skippable_with_the_reason(sink: GitHubSink, fake_github: FakeGitHub) -> None:
    await fake_github.put_issue("acme/shop", "Checkout is down")
    fake_github.fail_next(422)
    with pytest.raises(SkippableError, match="422"):
        await sink.execute(comment(), wrap(comment()))


async def test_add_comment_to_a_key_that_is_not_an_issue_is_skipped(sink: GitHubSink, fake_github: FakeGitHub) -> None:
    with pytest.raises(SkippableError, match="not a GitHub issue key"):
        await sink.execute(comment("acme/shop"), wrap(comment("acme/shop")))
    assert fake_github.requests == []


async def test_add_comment_disabled_backlinks_makes_no_call(
    fake_github: FakeGitHub, make_config: Callable[..., GitHubConfig], ctx: ConnectorContext
) -> None:
    sink = GitHubSink(make_config(fake_github.url, comment_backlinks=False), ctx)
    try:
        effect = await sink.execute(comment(), wrap(comment()))
    finally:
        await sink.stop()
    assert effect.skipped and fake_github.requests == []


# -- CreateTicket -------------------------------------------------------------------------------


async def test_create_ticket_twice_creates_one_issue(sink: GitHubSink, fake_github: FakeGitHub) -> None:
    first = await sink.execute(create(), wrap(create()))
    again = await sink.execute(create(), wrap(create()))
    assert fake_github.created == ["acme/shop#1"]
    assert first.created == again.created == RecordRef(system="github", key="acme/shop#1")
    assert not first.recovered and again.recovered
    issue = fake_github.issue("acme/shop", 1)
    assert issue is not None and issue["title"] == "Checkout fails at payment"
    assert {label["name"] for label in issue["labels"]} == {"threadlink", thread_label(THREAD)}
    assert marker("thread", thread_label(THREAD)) in issue["body"]


async def test_create_ticket_finds_by_the_body_marker_when_labels_were_dropped(
    sink: GitHubSink, fake_github: FakeGitHub
) -> None:
    # An account without push access: GitHub silently drops the labels of the issue it opens.
    await fake_github.put_issue("acme/shop", "Other issue")
    await fake_github.put_issue(
        "acme/shop", "Checkout fails", body="words\n\n" + marker("thread", thread_label(THREAD))
    )
    await fake_github.put_issue("acme/shop", "Newest issue")
    effect = await sink.execute(create(), wrap(create()))
    assert effect.recovered and effect.created == RecordRef(system="github", key="acme/shop#2")
    assert fake_github.created == []


async def test_create_ticket_in_something_that_is_not_a_repository_is_fatal(
    sink: GitHubSink, fake_github: FakeGitHub
) -> None:
    with pytest.raises(FatalError, match="not a repository"):
        await sink.execute(create("SUP"), wrap(create("SUP")))
    assert fake_github.requests == []


async def test_create_ticket_in_a_repository_with_issues_disabled_is_skippable(
    sink: GitHubSink, fake_github: FakeGitHub
) -> None:
    fake_github.fail_next(410, method="POST")
    with pytest.raises(SkippableError, match="410"):
        await sink.execute(create(), wrap(create()))


async def test_unsupported_command_is_skipped_without_a_call(sink: GitHubSink, fake_github: FakeGitHub) -> None:
    command = PostMessage(command_id="m-1", target="github", destination=THREAD, text="hi")
    with pytest.raises(SkippableError, match="cannot post_message"):
        await sink.execute(command, wrap(command))
    assert fake_github.requests == []


def test_writes_take_the_writes_lane_and_reads_only_the_account(sink: GitHubSink) -> None:
    assert [lane.name for lane in sink.lanes(comment())] == ["writes", "account"]
    assert [lane.name for lane in sink.lanes(create())] == ["writes", "account"]
    assert [lane.name for lane in sink.lanes(fetch("acme/shop#1"))] == ["account"]


async def test_no_backlink_on_issues_of_owners_not_in_write_owners(
    fake_github: FakeGitHub, make_config: Callable[..., GitHubConfig], ctx: ConnectorContext
) -> None:
    """A thread naming someone else's public issue must not leave its permalink there."""
    await fake_github.put_issue("acme/shop", "Ours")
    sink = GitHubSink(make_config(fake_github.url, write_owners=["Other-Org"]), ctx)
    try:
        effect = await sink.execute(comment(), wrap(comment()))
        with pytest.raises(FatalError, match="write_owners"):
            await sink.execute(create(), wrap(create()))
        fetched = await sink.execute(fetch("acme/shop#1"), wrap(fetch("acme/shop#1")))
    finally:
        await sink.stop()
    assert effect.skipped == "acme is not in write_owners" and fetched.found is True
    assert [r.method for r in fake_github.requests] == ["GET"]  # looked up, never written to
