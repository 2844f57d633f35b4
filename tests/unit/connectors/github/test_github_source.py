"""The webhook source: X-Hub-Signature-256 on the raw body, issues and issue_comment deliveries
mapped to records and record comments, redeliveries published once, malformed bodies refused.
Payloads come from FakeGitHub, which checks each against GitHub's `x-webhooks` schemas."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

import pytest

from connectors.base import ConnectorContext, Unauthorized, WebhookRequest
from connectors.errors import SkippableError
from connectors.github.config import GitHubConfig
from connectors.github.source import GitHubWebhookSource, sign_payload, signature_problem
from connectors.runtime.kafka import PublishError
from connectors.runtime.payloads import InvalidPayload
from sandbox.github_api import FakeGitHub
from schemas import events
from schemas.records import RecordComment, RecordMissing, TicketRecord
from schemas.topics import TopicNames
from tests.unit.connectors.recording import RecordingPublisher

from .conftest import WEBHOOK_SECRET

pytestmark = pytest.mark.unit


def signed(
    body: bytes, *, event: str = "issues", delivery: str = "d-1", secret: str = WEBHOOK_SECRET
) -> WebhookRequest:
    """Sign as GitHub does, independently of the code under test."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return WebhookRequest(
        headers={"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Event": event, "X-GitHub-Delivery": delivery},
        body=body,
    )


def from_fake(fake: FakeGitHub, event: str, payload: dict[str, Any], delivery: str = "d-1") -> WebhookRequest:
    body, headers = fake.signed(event, payload, delivery=delivery)
    return WebhookRequest(headers=headers, body=body)


@pytest.fixture
def source(config: GitHubConfig, ctx: ConnectorContext) -> GitHubWebhookSource:
    return GitHubWebhookSource(config, ctx)


async def deliver(source: GitHubWebhookSource, request: WebhookRequest) -> Any:
    source.verify(request)
    return await source.handle(request)


# -- signatures ---------------------------------------------------------------------------------


def test_signature_of_the_raw_body_is_accepted(source: GitHubWebhookSource) -> None:
    body = b'{"action":"opened"}'
    source.verify(signed(body))
    assert sign_payload(body, WEBHOOK_SECRET) == signed(body).headers["X-Hub-Signature-256"]


def test_signature_with_another_secret_is_refused(source: GitHubWebhookSource) -> None:
    with pytest.raises(Unauthorized, match="does not match"):
        source.verify(signed(b"{}", secret="someone-elses-secret"))


def test_missing_signature_is_refused(source: GitHubWebhookSource) -> None:
    request = signed(b"{}")
    del request.headers["X-Hub-Signature-256"]  # type: ignore[attr-defined]
    with pytest.raises(Unauthorized, match="no X-Hub-Signature-256"):
        source.verify(request)


def test_tampered_body_is_refused(source: GitHubWebhookSource) -> None:
    request = signed(b'{"action":"opened"}')
    with pytest.raises(Unauthorized):
        source.verify(WebhookRequest(headers=request.headers, body=b'{"action":"deleted"}'))


@pytest.mark.parametrize(
    "header", ["sha1=" + "0" * 40, "sha256", "sha256=", "garbage", "sha256=" + "z" * 64, "SHA256=" + "0" * 64]
)
def test_hostile_signature_headers_are_refused_not_crashed(header: str) -> None:
    assert signature_problem(b"{}", WEBHOOK_SECRET, header) is not None


def test_legacy_sha1_signature_alone_is_refused(source: GitHubWebhookSource) -> None:
    digest = hmac.new(WEBHOOK_SECRET.encode(), b"{}", hashlib.sha1).hexdigest()
    with pytest.raises(Unauthorized, match="no X-Hub-Signature-256"):
        source.verify(WebhookRequest(headers={"X-Hub-Signature": f"sha1={digest}"}, body=b"{}"))


def test_unauthorized_reason_never_holds_the_secret(source: GitHubWebhookSource) -> None:
    with pytest.raises(Unauthorized) as caught:
        source.verify(signed(b"{}", secret="wrong"))
    assert WEBHOOK_SECRET not in str(caught.value)


# -- issues -------------------------------------------------------------------------------------


async def test_issue_opened_in_a_private_repo_is_an_internal_ticket_record(
    source: GitHubWebhookSource, fake_github: FakeGitHub, publisher: RecordingPublisher, topics: TopicNames
) -> None:
    await fake_github.put_issue("acme/shop", "Checkout is down", assignee="ada", labels=["bug", "p1"])
    answer = await deliver(source, from_fake(fake_github, "issues", fake_github.issue_event("opened", "acme/shop", 1)))
    assert answer.status == 200 and answer.outcome == "accepted"
    (sent,) = publisher.published
    assert (sent.topic, sent.key) == (topics.records, "github:acme/shop#1")
    record = sent.envelope.data
    assert isinstance(record, TicketRecord)
    assert (record.title, record.status, record.assignee, record.labels) == (
        "Checkout is down",
        "open",
        "ada",
        ["bug", "p1"],
    )
    assert record.project == "acme/shop" and record.url == "https://github.com/acme/shop/issues/1"
    assert record.visibility == "internal" and sent.envelope.visibility == "internal"
    assert record.version > 0
    assert sent.envelope.id == "github:d-1" and sent.envelope.type == events.RECORD_UPSERTED.format(kind="ticket")


async def test_issue_in_a_public_repo_is_public_and_config_can_narrow_it(
    fake_github: FakeGitHub, make_config: Any, ctx: ConnectorContext, publisher: RecordingPublisher
) -> None:
    await fake_github.put_issue("acme/website", "Typo on the landing page")
    payload = fake_github.issue_event("opened", "acme/website", 1)
    await deliver(GitHubWebhookSource(make_config(), ctx), from_fake(fake_github, "issues", payload, "d-a"))
    narrowed = make_config(repo_visibility={"Acme/Website": "restricted"})
    await deliver(GitHubWebhookSource(narrowed, ctx), from_fake(fake_github, "issues", payload, "d-b"))
    assert [p.envelope.data.visibility for p in publisher.published] == ["public", "restricted"]


async def test_private_repos_can_be_restricted_by_default(
    fake_github: FakeGitHub, make_config: Any, ctx: ConnectorContext, publisher: RecordingPublisher
) -> None:
    await fake_github.put_issue("acme/shop", "Secret roadmap")
    source = GitHubWebhookSource(make_config(private_visibility="restricted"), ctx)
    await deliver(source, from_fake(fake_github, "issues", fake_github.issue_event("opened", "acme/shop", 1)))
    assert publisher.published[0].envelope.data.visibility == "restricted"


@pytest.mark.parametrize("action", ["edited", "closed", "reopened", "labeled", "assigned", "milestoned", "locked"])
async def test_every_issue_change_action_upserts_the_record(
    action: str, source: GitHubWebhookSource, fake_github: FakeGitHub, publisher: RecordingPublisher
) -> None:
    await fake_github.put_issue("acme/shop", "Checkout is down", state="closed", state_reason="not_planned")
    payload = fake_github.issue_event(action, "acme/shop", 1)
    if action in ("assigned", "milestoned", "locked"):
        payload.pop("changes", None)
    body = json.dumps(payload).encode()  # signed by the test: the spec has no `changes` for these actions
    await deliver(source, signed(body, delivery=f"d-{action}"))
    record = publisher.published[0].envelope.data
    assert isinstance(record, TicketRecord) and record.status == "closed (not planned)"


async def test_issue_deleted_is_a_missing_record_newer_than_its_last_state(
    source: GitHubWebhookSource, fake_github: FakeGitHub, publisher: RecordingPublisher
) -> None:
    await fake_github.put_issue("acme/shop", "Spam")
    await deliver(source, from_fake(fake_github, "issues", fake_github.issue_event("opened", "acme/shop", 1), "d-1"))
    await deliver(source, from_fake(fake_github, "issues", fake_github.issue_event("deleted", "acme/shop", 1), "d-2"))
    opened, deleted = (p.envelope.data for p in publisher.published)
    assert isinstance(deleted, RecordMissing) and deleted.reason == "deleted"
    assert deleted.ref == opened.ref and deleted.version > opened.version
    assert publisher.published[1].envelope.type == events.RECORD_MISSING


async def test_issue_transferred_away_is_missing_under_its_old_key(
    source: GitHubWebhookSource, fake_github: FakeGitHub, publisher: RecordingPublisher
) -> None:
    await fake_github.put_issue("acme/shop", "Belongs elsewhere")
    await deliver(source, from_fake(fake_github, "issues", fake_github.issue_event("transferred", "acme/shop", 1)))
    missing = publisher.published[0].envelope.data
    assert isinstance(missing, RecordMissing) and (missing.ref.key, missing.reason) == ("acme/shop#1", "transferred")


# -- comments -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("action", "as_"), [("created", "added"), ("edited", "edited"), ("deleted", "deleted")])
async def test_issue_comment_becomes_a_record_comment(
    action: str,
    as_: str,
    source: GitHubWebhookSource,
    fake_github: FakeGitHub,
    publisher: RecordingPublisher,
    topics: TopicNames,
) -> None:
    await fake_github.put_issue("acme/shop", "Checkout is down")
    comment = fake_github._store_comment("acme/shop", 1, "Fixed in **v2**", "grace")
    payload = fake_github.comment_event(action, "acme/shop", 1, comment)
    await deliver(source, from_fake(fake_github, "issue_comment", payload))
    (sent,) = publisher.published
    assert (sent.topic, sent.key) == (topics.record_comments, "github:acme/shop#1")
    data = sent.envelope.data
    assert isinstance(data, RecordComment)
    assert (data.action, data.author, data.body, data.comment_id) == (
        as_,
        "grace",
        "Fixed in **v2**",
        str(comment["id"]),
    )
    assert data.public and data.visibility == "internal" and not data.by_threadlink
    assert sent.envelope.type == events.RECORD_COMMENT.format(action=as_)


async def test_threadlinks_own_comments_are_marked_by_marker_and_by_login(
    source: GitHubWebhookSource, fake_github: FakeGitHub, publisher: RecordingPublisher
) -> None:
    await fake_github.put_issue("acme/shop", "Checkout is down")
    marked = fake_github._store_comment("acme/shop", 1, "Discussed\n\n<!-- threadlink:command=c-1 -->", "someone")
    by_bot = fake_github._store_comment("acme/shop", 1, "Ada (slack): hi", "threadlink-bot")
    for n, comment in enumerate((marked, by_bot)):
        payload = fake_github.comment_event("created", "acme/shop", 1, comment)
        await deliver(source, from_fake(fake_github, "issue_comment", payload, f"d-{n}"))
    first, second = (p.envelope.data for p in publisher.published)
    assert first.by_threadlink and second.by_threadlink
    assert first.body == "Discussed"  # the marker is threadlink's bookkeeping, not the words


async def test_pinned_comment_is_acknowledged_and_ignored(
    source: GitHubWebhookSource, fake_github: FakeGitHub, publisher: RecordingPublisher
) -> None:
    await fake_github.put_issue("acme/shop", "Checkout is down")
    comment = fake_github._store_comment("acme/shop", 1, "pin me", "grace")
    payload = {**fake_github.comment_event("created", "acme/shop", 1, comment), "action": "pinned"}
    answer = await deliver(source, signed(json.dumps(payload).encode(), event="issue_comment"))
    assert (answer.status, answer.outcome, publisher.published) == (200, "ignored", [])


# -- other events, redeliveries ----------------------------------------------------------------


async def test_ping_is_answered_2xx(source: GitHubWebhookSource, publisher: RecordingPublisher) -> None:
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1, "hook": {"type": "Repository"}}).encode()
    answer = await deliver(source, signed(body, event="ping"))
    assert (answer.status, answer.outcome, publisher.published) == (200, "ignored", [])


@pytest.mark.parametrize("event", ["push", "pull_request", "star", "x" * 300])
async def test_unknown_events_are_acknowledged_and_ignored(
    event: str, source: GitHubWebhookSource, publisher: RecordingPublisher
) -> None:
    answer = await deliver(source, signed(b'{"action":"opened"}', event=event))
    assert (answer.status, answer.outcome, publisher.published) == (200, "ignored", [])
    assert len(json.dumps(answer.json)) < 100  # a hostile event name is not echoed whole


async def test_redelivery_with_the_same_delivery_id_publishes_once(
    source: GitHubWebhookSource, fake_github: FakeGitHub, publisher: RecordingPublisher
) -> None:
    await fake_github.put_issue("acme/shop", "Checkout is down")
    request = from_fake(fake_github, "issues", fake_github.issue_event("opened", "acme/shop", 1), "same")
    first, again = await deliver(source, request), await deliver(source, request)
    assert (first.outcome, again.outcome) == ("accepted", "duplicate")
    assert len(publisher.published) == 1


async def test_concurrent_redeliveries_publish_once(
    source: GitHubWebhookSource, fake_github: FakeGitHub, publisher: RecordingPublisher
) -> None:
    await fake_github.put_issue("acme/shop", "Checkout is down")
    request = from_fake(fake_github, "issues", fake_github.issue_event("opened", "acme/shop", 1), "same")
    answers = await asyncio.gather(*(deliver(source, request) for _ in range(5)))
    assert sorted(a.outcome for a in answers) == ["accepted"] + ["duplicate"] * 4
    assert len(publisher.published) == 1


async def test_a_delivery_whose_publish_failed_is_published_on_redelivery(
    source: GitHubWebhookSource, fake_github: FakeGitHub, publisher: RecordingPublisher
) -> None:
    await fake_github.put_issue("acme/shop", "Checkout is down")
    request = from_fake(fake_github, "issues", fake_github.issue_event("opened", "acme/shop", 1), "flaky")
    publisher.fail_with, publisher.fail_times = PublishError("broker away"), 1
    with pytest.raises(PublishError):  # the runtime answers 503: GitHub's redelivery comes back
        await deliver(source, request)
    assert (await deliver(source, request)).outcome == "accepted"
    assert len(publisher.published) == 1


async def test_redeliveries_published_before_a_restart_are_recognised(
    config: GitHubConfig, topics: TopicNames, publisher: RecordingPublisher, fake_github: FakeGitHub
) -> None:
    asked: list[str] = []

    async def published_lately(topic: str, *, id_prefix: str, since_s: float) -> list[str]:
        asked.append(topic)
        return ["github:before-restart"] if topic == topics.records else []

    ctx = ConnectorContext(name="github", topics=topics, publisher=publisher, published_lately=published_lately)
    source = GitHubWebhookSource(config, ctx)
    await source.start()
    await fake_github.put_issue("acme/shop", "Checkout is down")
    request = from_fake(fake_github, "issues", fake_github.issue_event("opened", "acme/shop", 1), "before-restart")
    assert (await deliver(source, request)).outcome == "duplicate"
    assert asked == [topics.records, topics.record_comments] and publisher.published == []


# -- malformed, signed ---------------------------------------------------------------------------

MALFORMED = {
    "not-json": (b'{"action": "op', "issues"),
    "json-array": (b"[]", "issues"),
    "no-action": (b'{"issue": {"number": 1}, "repository": {"full_name": "acme/shop"}}', "issues"),
    "no-repository": (b'{"action": "opened", "issue": {"number": 1}}', "issues"),
    "repository-traversal": (
        b'{"action": "opened", "issue": {"number": 1}, "repository": {"full_name": "../x"}}',
        "issues",
    ),
    "no-issue-number": (b'{"action": "opened", "issue": {"title": "x"}, "repository": {"full_name": "a/b"}}', "issues"),
    "number-is-bool": (
        b'{"action": "opened", "issue": {"number": true}, "repository": {"full_name": "a/b"}}',
        "issues",
    ),
    "comment-without-id": (
        b'{"action": "created", "issue": {"number": 1}, "comment": {"body": "x"}, "repository": {"full_name": "a/b"}}',
        "issue_comment",
    ),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
async def test_malformed_signed_payloads_are_refused_as_skippable(
    name: str, source: GitHubWebhookSource, publisher: RecordingPublisher
) -> None:
    body, event = MALFORMED[name]
    with pytest.raises((SkippableError, InvalidPayload)):  # the runtime answers 400
        await deliver(source, signed(body, event=event))
    assert publisher.published == []


async def test_webhook_without_event_header_is_refused(source: GitHubWebhookSource) -> None:
    request = signed(b'{"action":"opened"}')
    headers = {k: v for k, v in request.headers.items() if k != "X-GitHub-Event"}
    with pytest.raises(SkippableError, match="X-GitHub-Event"):
        await deliver(source, WebhookRequest(headers=headers, body=request.body))


async def test_hostile_delivery_header_falls_back_to_the_body_digest(
    source: GitHubWebhookSource, fake_github: FakeGitHub, publisher: RecordingPublisher
) -> None:
    await fake_github.put_issue("acme/shop", "Checkout is down")
    request = from_fake(fake_github, "issues", fake_github.issue_event("opened", "acme/shop", 1), "x" * 500)
    await deliver(source, request)
    assert publisher.published[0].envelope.id.startswith("github:sha256:")
