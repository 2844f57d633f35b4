from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.base import ConnectorContext, Unauthorized, WebhookRequest
from connectors.errors import SkippableError
from connectors.jira.config import JiraConfig
from connectors.jira.mapping import backlink_property
from connectors.jira.source import JiraWebhookSource, sign_payload, signature_problem
from connectors.runtime.kafka import PublishError
from sandbox.contracts.jira import JiraContract
from sandbox.jira_api import FakeJira
from schemas import events
from schemas.records import DisplayField, RecordComment, RecordMissing, TicketRecord, version_of
from schemas.topics import TopicNames

pytestmark = pytest.mark.unit

TIMESTAMP_MS = 1709288430456


def signed(body: bytes, secret: str, **headers: str) -> WebhookRequest:
    """Sign as Jira Cloud does, independently of the code under test."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return WebhookRequest(headers={"X-Hub-Signature": f"sha256={digest}", **headers}, body=body)


def issue_payload(event: str = "jira:issue_created", key: str = "OPS-7", **fields: Any) -> dict[str, Any]:
    """The shape of a Jira Cloud issue webhook (trimmed to what matters)."""
    return {
        "timestamp": TIMESTAMP_MS,
        "webhookEvent": event,
        "issue_event_type_name": event.removeprefix("jira:"),
        "user": {"accountId": "5b10a2844c20165700ede21g", "displayName": "Mia Krystof", "active": True},
        "issue": {
            "id": "10001",
            "self": "https://acme.atlassian.net/rest/api/3/issue/10001",
            "key": key,
            "fields": {
                "summary": "Checkout is down",
                "status": {"name": "To Do", "id": "10000"},
                "assignee": None,
                "priority": {"name": "Highest", "id": "1"},
                "project": {"key": key.split("-")[0], "name": "Operations"},
                "updated": "2024-03-01T10:20:30.456+0000",
                **fields,
            },
        },
    }


def comment_payload(**comment: Any) -> dict[str, Any]:
    payload = issue_payload("comment_created")
    payload["comment"] = {
        "self": "https://acme.atlassian.net/rest/api/3/issue/10001/comment/10100",
        "id": "10100",
        "author": {"accountId": "abc", "displayName": "Ada Lovelace", "active": True},
        "body": "Rolled back, [see the thread|https://acme.slack.com/archives/C01/p1]",
        "created": "2024-03-01T10:25:00.000+0000",
        "updated": "2024-03-01T10:25:00.000+0000",
        "jsdPublic": True,
        **comment,
    }
    return payload


@pytest.fixture
def source(config: JiraConfig, ctx: ConnectorContext) -> JiraWebhookSource:
    return JiraWebhookSource(config, ctx)


@pytest.fixture
def secret(config: JiraConfig) -> str:
    return config.webhook_secret.get_secret_value()


# -- verification -------------------------------------------------------------------------


def test_sign_payload_is_hmac_sha256_hex_of_the_raw_body() -> None:
    assert sign_payload(b'{"a":1}', "s3cret") == (
        "sha256=" + hmac.new(b"s3cret", b'{"a":1}', hashlib.sha256).hexdigest()
    )


def test_good_signature_passes(source: JiraWebhookSource, secret: str) -> None:
    source.verify(signed(b'{"webhookEvent":"jira:issue_created"}', secret))


def test_header_name_is_case_insensitive(source: JiraWebhookSource, secret: str) -> None:
    request = signed(b"{}", secret)
    source.verify(WebhookRequest(headers={"x-hub-signature": request.headers["X-Hub-Signature"]}, body=b"{}"))


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "no X-Hub-Signature"),
        ({"X-Hub-Signature": "nonsense"}, "malformed"),
        ({"X-Hub-Signature": "sha1=" + "0" * 40}, "unsupported"),
        ({"X-Hub-Signature": "sha256=" + "0" * 64}, "does not match"),
    ],
)
def test_bad_or_missing_signature_is_unauthorized(
    source: JiraWebhookSource, secret: str, headers: dict[str, str], reason: str
) -> None:
    with pytest.raises(Unauthorized, match=reason) as caught:
        source.verify(WebhookRequest(headers=headers, body=b"{}"))
    assert secret not in str(caught.value)


def test_signature_over_another_body_or_secret_fails(secret: str) -> None:
    good = signed(b'{"a":1}', secret).headers["X-Hub-Signature"]
    assert signature_problem(b'{"a":1}', secret, good) is None
    assert signature_problem(b'{"a": 1}', secret, good)  # re-serialised JSON is not the raw body
    assert signature_problem(b'{"a":1}', "other-secret", good)


# -- events -------------------------------------------------------------------------------


async def test_issue_created_publishes_a_ticket_record(
    source: JiraWebhookSource, publisher: Any, topics: TopicNames, secret: str
) -> None:
    body = json.dumps(issue_payload()).encode()
    request = signed(body, secret, **{"X-Atlassian-Webhook-Identifier": "delivery-1"})
    source.verify(request)
    response = await source.handle(request)

    assert response.status == 200
    [published] = publisher.published
    assert published.topic == topics.records
    assert published.key == "jira:OPS-7"
    envelope = published.envelope
    assert envelope.type == events.RECORD_UPSERTED.format(kind="ticket")
    assert envelope.id == "jira:delivery-1"
    assert envelope.subject == "jira:OPS-7"
    assert envelope.source_system == "jira"
    assert envelope.visibility == "restricted"
    assert int(envelope.occurred_at.timestamp() * 1000) == TIMESTAMP_MS
    record = envelope.data
    assert isinstance(record, TicketRecord)
    assert (record.title, record.status, record.priority, record.assignee) == (
        "Checkout is down",
        "To Do",
        "Highest",
        None,
    )
    assert record.url == "https://acme.atlassian.net/browse/OPS-7"
    # Its version is Jira's update time in epoch ms, so webhook and REST versions compare.
    assert record.version == version_of(datetime(2024, 3, 1, 10, 20, 30, 456000, tzinfo=UTC)) == 1709288430456
    assert record.fields == [
        DisplayField(name="status", label="Status", value="To Do"),
        DisplayField(name="assignee", label="Assignee", value="Unassigned"),
        DisplayField(name="priority", label="Priority", value="Highest"),
    ]


async def test_retries_of_one_delivery_share_the_envelope_id(
    source: JiraWebhookSource, publisher: Any, secret: str
) -> None:
    body = json.dumps(issue_payload("jira:issue_updated", status={"name": "Done"})).encode()
    for retry in ("0", "1"):
        await source.handle(
            signed(body, secret, **{"X-Atlassian-Webhook-Identifier": "d-42", "X-Atlassian-Webhook-Retry": retry})
        )
    ids = {p.envelope.id for p in publisher.published}
    assert ids == {"jira:d-42"}
    assert publisher.published[0].envelope.data.status == "Done"


async def test_without_identifier_the_id_comes_from_event_issue_and_timestamp(
    source: JiraWebhookSource, publisher: Any, secret: str
) -> None:
    body = json.dumps(issue_payload("jira:issue_updated")).encode()
    await source.handle(signed(body, secret))
    await source.handle(signed(body, secret))
    assert [p.envelope.id for p in publisher.published] == [f"jira:jira:issue_updated:10001:{TIMESTAMP_MS}"] * 2


async def test_issue_deleted_publishes_record_missing(
    source: JiraWebhookSource, publisher: Any, topics: TopicNames, secret: str
) -> None:
    body = json.dumps(issue_payload("jira:issue_deleted", key="WEB-3")).encode()
    await source.handle(signed(body, secret))
    [published] = publisher.published
    assert published.topic == topics.records
    assert published.key == "jira:WEB-3"
    assert published.envelope.type == events.RECORD_MISSING
    assert published.envelope.visibility == "public"
    # Versioned by when Jira deleted it, so a deletion older than the stored record is stale.
    assert published.envelope.data == RecordMissing(
        ref={"system": "jira", "key": "WEB-3"}, reason="deleted", version=TIMESTAMP_MS
    )


async def test_comment_created_publishes_a_ticket_comment(
    source: JiraWebhookSource, publisher: Any, topics: TopicNames, secret: str
) -> None:
    body = json.dumps(comment_payload()).encode()
    await source.handle(signed(body, secret, **{"X-Atlassian-Webhook-Identifier": "c-1"}))
    [published] = publisher.published
    assert published.topic == topics.record_comments
    assert published.key == "jira:OPS-7"
    assert published.envelope.type == events.RECORD_COMMENT.format(action="added")
    assert published.envelope.id == "jira:c-1"
    comment = published.envelope.data
    assert isinstance(comment, RecordComment)
    assert comment.comment_id == "10100"
    assert comment.author == "Ada Lovelace"
    assert comment.body.startswith("Rolled back")
    assert comment.public is True
    assert comment.created_at is not None
    assert comment.action == "added"
    assert comment.visibility == published.envelope.visibility == "restricted"  # OPS is restricted
    assert comment.by_threadlink is False
    assert comment.version == version_of(datetime(2024, 3, 1, 10, 25, tzinfo=UTC))


async def test_a_comment_in_a_public_project_is_public_unless_restricted(
    source: JiraWebhookSource, publisher: Any, secret: str
) -> None:
    payload = comment_payload()
    payload["issue"]["key"] = "WEB-1"
    await source.handle(signed(json.dumps(payload).encode(), secret))
    internal_note = comment_payload(jsdPublic=False)
    internal_note["issue"]["key"] = "WEB-1"
    await source.handle(signed(json.dumps(internal_note).encode(), secret))
    shared, note = (p.envelope for p in publisher.published)
    assert (shared.data.visibility, shared.visibility) == ("public", "public")
    assert (note.data.visibility, note.visibility, note.data.public) == ("internal", "internal", False)


async def test_an_edited_comment_is_versioned_by_its_update_time(
    source: JiraWebhookSource, publisher: Any, secret: str
) -> None:
    payload = comment_payload(updated="2024-03-01T11:00:00.000+0000")
    await source.handle(signed(json.dumps(payload).encode(), secret))
    [published] = publisher.published
    assert published.envelope.data.version == version_of(datetime(2024, 3, 1, 11, 0, tzinfo=UTC))


async def test_threadlinks_own_backlink_comment_is_marked_as_such(
    source: JiraWebhookSource, publisher: Any, secret: str
) -> None:
    # As Jira lists a comment's entity properties: [{key, value}].
    tagged = [{"key": k, "value": v} for k, v in backlink_property("add_comment-1").items()]
    payload = comment_payload(properties=tagged)
    await source.handle(signed(json.dumps(payload).encode(), secret))
    [published] = publisher.published
    assert published.envelope.data.by_threadlink is True


async def test_restricted_comment_is_not_public(source: JiraWebhookSource, publisher: Any, secret: str) -> None:
    payload = comment_payload(visibility={"type": "role", "value": "Administrators"})
    payload["issue"]["key"] = "WEB-1"
    await source.handle(signed(json.dumps(payload).encode(), secret))
    [published] = publisher.published
    assert published.envelope.data.public is False
    assert published.envelope.visibility == "restricted"


async def test_other_events_are_acknowledged_and_ignored(
    source: JiraWebhookSource, publisher: Any, secret: str
) -> None:
    body = json.dumps({"timestamp": TIMESTAMP_MS, "webhookEvent": "worklog_created", "worklog": {}}).encode()
    response = await source.handle(signed(body, secret))
    assert response.status == 200
    assert publisher.published == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"timestamp": 1}',
        json.dumps({"webhookEvent": "jira:issue_created", "issue": {"fields": {}}}).encode(),
        json.dumps({"webhookEvent": "comment_created", "issue": {"key": "OPS-1"}}).encode(),
    ],
)
async def test_malformed_payload_is_skippable(
    source: JiraWebhookSource, publisher: Any, secret: str, body: bytes
) -> None:
    with pytest.raises(SkippableError):
        await source.handle(signed(body, secret))
    assert publisher.published == []


async def test_a_broker_failure_propagates_so_jira_retries(
    source: JiraWebhookSource, publisher: Any, secret: str
) -> None:
    publisher.fail_with = PublishError("broker away")
    with pytest.raises(PublishError):  # the runtime answers 503: Jira retries
        await source.handle(signed(json.dumps(issue_payload()).encode(), secret))


async def test_what_the_fake_jira_sends_verifies_and_maps(
    source: JiraWebhookSource, publisher: Any, config: JiraConfig, contract: JiraContract
) -> None:
    """The sandbox's webhooks and the connector agree (each signs/verifies on its own)."""
    jira = FakeJira(
        email=config.email, api_token="t", webhook_secret=config.webhook_secret.get_secret_value(), contract=contract
    )
    await jira.put_issue("WEB-9", "Typo on pricing page", status="In Progress", assignee="Grace Hopper")
    body, headers = jira.signed(jira.issue_event("jira:issue_updated", "WEB-9"))
    request = WebhookRequest(headers=headers, body=body)
    source.verify(request)
    await source.handle(request)
    [published] = publisher.published
    assert published.envelope.id == f"jira:{headers['X-Atlassian-Webhook-Identifier']}"
    record = published.envelope.data
    assert (record.ref.key, record.status, record.assignee, record.visibility) == (
        "WEB-9",
        "In Progress",
        "Grace Hopper",
        "public",
    )


async def test_updated_and_deleted_comments_are_the_same_comment_edited_and_deleted(
    source: JiraWebhookSource, publisher: Any, secret: str
) -> None:
    edited = comment_payload(updated="2024-03-01T11:00:00.000+0000", body="Rolled back twice")
    edited["webhookEvent"] = "comment_updated"
    deleted = comment_payload()
    deleted["webhookEvent"] = "comment_deleted"
    deleted["timestamp"] = TIMESTAMP_MS + 3_600_000  # an hour after the issue's update, after the edit
    for payload, delivery in ((edited, "c-2"), (deleted, "c-3")):
        await source.handle(
            signed(json.dumps(payload).encode(), secret, **{"X-Atlassian-Webhook-Identifier": delivery})
        )
    first, second = (p.envelope for p in publisher.published)
    assert first.type == events.RECORD_COMMENT.format(action="edited")
    assert (first.data.comment_id, first.data.action, first.data.body) == ("10100", "edited", "Rolled back twice")
    assert first.data.version == version_of(datetime(2024, 3, 1, 11, 0, tzinfo=UTC))
    assert second.type == events.RECORD_COMMENT.format(action="deleted")
    assert (second.data.comment_id, second.data.action, second.data.body) == ("10100", "deleted", "")
    assert second.data.version == TIMESTAMP_MS + 3_600_000  # when Jira deleted it, later than its last edit
