"""The Zendesk connector against FakeZendesk (sandbox/zendesk_api.py), which checks every request
against Zendesk's documented formats (its OpenAPI file is not kept here: see
../shared/specs/zendesk/README.md; the fake's docstring names the pages). Config errors, webhook
signatures (stale, forged, missing), hostile bodies, mapping (internal notes stay internal), the
export poller's cursor and pages, and the sink's find-before-create with an Idempotency-Key."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.base import ConnectorContext, Unauthorized, WebhookRequest
from connectors.errors import AuthError, BackpressureError, FatalError, RetriableError, SkippableError
from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.config import ZendeskConfig
from connectors.zendesk.connector import build
from connectors.zendesk.mapping import comment_record, thread_external_id, ticket_record
from connectors.zendesk.sink import ZendeskSink
from connectors.zendesk.source import ZendeskTicketExport, ZendeskWebhookSource
from sandbox.zendesk_api import FakeZendesk, zendesk_time
from schemas import events
from schemas.commands import AddComment, Command, CreateTicket, FetchRecord, command_id_for
from schemas.envelope import Envelope
from schemas.records import RecordComment, RecordRef, TicketRecord
from schemas.social import ThreadRef
from schemas.topics import TopicNames
from streams.mentions import MentionExtractor
from tests.unit.connectors.recording import RecordingPublisher
from threadlink.config import load_settings

pytestmark = pytest.mark.unit

EMAIL = "threadlink@example.com"
TOKEN = "zendesk-unit-token-not-real"
SECRET = "zendesk-unit-signing-secret"
NAME = "zendesk-ops"
THREAD = ThreadRef(platform="slack", workspace="T1", channel="C1", thread_id="1700000000.000100")
DOC = Path(__file__).resolve().parents[4] / "docs" / "connectors" / "zendesk.md"


@pytest.fixture
async def fake() -> AsyncIterator[FakeZendesk]:
    zendesk = FakeZendesk(email=EMAIL, api_token=TOKEN, webhook_secret=SECRET, recent_exclusion_s=0)
    await zendesk.start()
    yield zendesk
    zendesk.assert_no_violations()
    await zendesk.stop()


def config(fake: FakeZendesk | None = None, **extra: Any) -> ZendeskConfig:
    base = fake.url if fake else "https://acme.zendesk.com"
    return ZendeskConfig.model_validate(
        {"base_url": base, "email": EMAIL, "api_token": TOKEN, "webhook_secret": SECRET, **extra}
    )


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


def context(publisher: RecordingPublisher) -> ConnectorContext:
    return ConnectorContext(name=NAME, topics=TopicNames(namespace="unit"), publisher=publisher)


def signed(body: bytes, *, at: datetime | None = None, secret: str = SECRET) -> WebhookRequest:
    """Signed as Zendesk documents it (base64(HMACSHA256(TIMESTAMP + BODY))), computed here."""
    timestamp = zendesk_time(at or datetime.now(UTC))
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    headers = {
        "X-Zendesk-Webhook-Signature": base64.b64encode(digest).decode(),
        "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
        "Content-Type": "application/json",
    }
    return WebhookRequest(headers=headers, body=body)


def envelope_of(command: Command) -> Envelope[Command]:
    return Envelope[Command].wrap(command, type=events.COMMAND.format(kind=command.kind), source_system="streams")


# -- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"email": EMAIL}, "email and api_token; api_token is missing"),
        ({"api_token": TOKEN}, "email is missing"),
        ({}, "no credential"),
        ({"email": EMAIL, "api_token": TOKEN, "oauth_token": "o"}, "not both"),
        ({"oauth_token": "o", "base_url": "https://acme.zendesk.com/api/v2"}, "no path"),
        ({"oauth_token": "o", "webhook_tolerance_s": 0}, "webhook_tolerance_s"),
        ({"oauth_token": "o", "subdomian": "acme"}, "subdomian"),
    ],
)
def test_config_mistakes_are_reported_clearly_and_located(entry: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ZendeskConfig.model_validate({"base_url": "https://acme.zendesk.com", "webhook_secret": SECRET, **entry})
    assert says in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_the_documented_config_loads(tmp_path: Path) -> None:
    block = next(b for b in DOC.read_text(encoding="utf-8").split("```yaml\n")[1:])
    path = tmp_path / "threadlink.yaml"
    path.write_text(block.split("```")[0], encoding="utf-8")
    settings = load_settings(path)
    documented = ZendeskConfig.model_validate(settings.connectors["zendesk"].plugin_fields())
    assert documented.base_url == "https://acme.zendesk.com" and documented.comment_public is False
    patterns = [(p.system, p.regex, p.key, p.lowercase) for p in settings.streams.mention_patterns]
    found = MentionExtractor(patterns).extract("zendesk#42 and https://acme.zendesk.com/agent/tickets/7 (#9 is not)")
    assert [ref.id for ref in found] == ["zendesk:42", "zendesk:7"]


def test_the_credential_is_sent_as_documented() -> None:
    from connectors.zendesk.client import authorization

    basic = authorization(config())
    assert base64.b64decode(basic.removeprefix("Basic ")).decode() == f"{EMAIL}/token:{TOKEN}"
    bearer = ZendeskConfig(base_url="https://acme.zendesk.com", oauth_token="oauth-x", webhook_secret="s")  # type: ignore[arg-type]
    assert authorization(bearer) == "Bearer oauth-x"


# -- webhook signatures and bodies ------------------------------------------------------------


def source(publisher: RecordingPublisher, **extra: Any) -> ZendeskWebhookSource:
    return ZendeskWebhookSource(config(**extra), context(publisher))


async def test_a_signed_ticket_event_is_verified_and_published(
    fake: FakeZendesk, publisher: RecordingPublisher
) -> None:
    ticket = await fake.put_ticket("Checkout is down", priority="high", tags=["vip"])
    body, headers = fake.signed(fake.ticket_event("status_changed", ticket["id"]))
    webhook = source(publisher)

    webhook.verify(WebhookRequest(headers=headers, body=body))
    response = await webhook.handle(WebhookRequest(headers=headers, body=body))

    assert response.status == 200
    (published,) = publisher.published
    record = published.envelope.data
    assert isinstance(record, TicketRecord)
    assert (record.ref.id, record.title, record.status, record.priority, record.labels) == (
        f"{NAME}:1",
        "Checkout is down",
        "open",
        "high",
        ["vip"],
    )
    assert published.topic == "unit.records" and published.key == f"{NAME}:1"


@pytest.mark.parametrize(
    "case", ["wrong-secret", "stale", "from-the-future", "no-signature", "no-timestamp", "not-base64", "tampered"]
)
async def test_forged_stale_or_unsigned_webhooks_are_unauthorized(case: str, publisher: RecordingPublisher) -> None:
    body = json.dumps({"type": "zen:event-type:ticket.created", "id": "e1", "detail": {"id": "1"}}).encode()
    now = datetime.now(UTC)
    request = {
        "wrong-secret": lambda: signed(body, secret="not-the-secret"),
        "stale": lambda: signed(body, at=now - timedelta(minutes=6)),
        "from-the-future": lambda: signed(body, at=now + timedelta(minutes=6)),
        "no-signature": lambda: WebhookRequest(
            headers={"X-Zendesk-Webhook-Signature-Timestamp": zendesk_time(now)}, body=body
        ),
        "no-timestamp": lambda: WebhookRequest(
            headers={"X-Zendesk-Webhook-Signature": signed(body).headers["X-Zendesk-Webhook-Signature"]}, body=body
        ),
        "not-base64": lambda: WebhookRequest(
            headers={**signed(body).headers, "X-Zendesk-Webhook-Signature": "%%%not base64"}, body=body
        ),
        "tampered": lambda: WebhookRequest(headers=signed(body).headers, body=body.replace(b'"1"', b'"2"')),
    }[case]()

    with pytest.raises(Unauthorized) as caught:
        source(publisher).verify(request)

    assert SECRET not in str(caught.value)
    assert publisher.attempts == 0
    if case == "stale":
        assert "away from now" in str(caught.value)


def test_the_signature_is_over_the_timestamp_then_the_body() -> None:
    """Zendesk's page gives the formula, not a vector: so the order is pinned by recomputing it
    (a signature over body + timestamp, the reverse order, is refused)."""
    body = b'{"say": "hello"}'
    stamp = zendesk_time(datetime.now(UTC))
    reverse = base64.b64encode(hmac.new(SECRET.encode(), body + stamp.encode(), hashlib.sha256).digest()).decode()
    webhook = source(RecordingPublisher())
    webhook.verify(signed(body))
    with pytest.raises(Unauthorized):
        webhook.verify(
            WebhookRequest(
                headers={"X-Zendesk-Webhook-Signature": reverse, "X-Zendesk-Webhook-Signature-Timestamp": stamp},
                body=body,
            )
        )


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff\xfe",
        b"[]",
        b'{"type": 7}',
        b'{"type": "zen:event-type:ticket.created", "detail": "x"}',
        b'{"type": "zen:event-type:ticket.created", "detail": {"id": true}}',
        b'{"type": "zen:event-type:ticket.created", "detail": {"id": "-1"}}',
        b'{"type": "zen:event-type:ticket.comment_added", "detail": {"id": "1"}, "event": {"comment": {"id": "x"}}}',
        b'{"type": "zen:event-type:ticket.soft_deleted", "detail": {}}',
        b'{"type": "zen:event-type:ticket.created", "detail": {"id": "1", "updated_at": NaN}}',
        b"[" * 5000,
    ],
)
async def test_hostile_signed_bodies_are_skippable_and_publish_nothing(
    body: bytes, publisher: RecordingPublisher
) -> None:
    webhook = source(publisher)
    request = signed(body)
    webhook.verify(request)
    with pytest.raises(SkippableError):
        await webhook.handle(request)
    assert publisher.attempts == 0


async def test_events_about_anything_but_tickets_are_acknowledged_and_ignored(publisher: RecordingPublisher) -> None:
    body = json.dumps({"type": "zen:event-type:user.active_changed", "id": "u1", "detail": {"id": "9"}}).encode()
    response = await source(publisher).handle(signed(body))
    assert (response.status, response.outcome, publisher.attempts) == (200, "ignored", 0)


async def test_an_internal_note_is_a_comment_that_is_not_public(
    fake: FakeZendesk, publisher: RecordingPublisher
) -> None:
    ticket = await fake.put_ticket("Checkout is down")
    fake.webhook_url = None
    await fake.add_comment(ticket["id"], "Customer is on the legacy plan", public=False, author_id=361_000_777)
    note = fake.tickets[ticket["id"]].comments[-1]
    body, headers = fake.signed(fake.ticket_event("comment_added", ticket["id"], comment=note))

    await source(publisher).handle(WebhookRequest(headers=headers, body=body))

    record, comment = (p.envelope.data for p in publisher.published)
    assert isinstance(comment, RecordComment) and isinstance(record, TicketRecord)
    assert (comment.public, comment.visibility, comment.body, comment.comment_id) == (
        False,
        "restricted",
        "Customer is on the legacy plan",
        str(note.id),
    )
    assert publisher.published[1].topic == "unit.records.comments"
    assert publisher.published[1].envelope.visibility == "restricted"


async def test_a_redelivered_event_publishes_nothing_new(fake: FakeZendesk, publisher: RecordingPublisher) -> None:
    ticket = await fake.put_ticket("Checkout is down")
    payload = fake.ticket_event("status_changed", ticket["id"])
    webhook = source(publisher)
    await webhook.handle(WebhookRequest(*reversed(fake.signed(payload))))  # type: ignore[misc]
    again = await webhook.handle(WebhookRequest(*reversed(fake.signed(payload))))  # type: ignore[misc]
    assert again.outcome == "duplicate" and len(publisher.published) == 1


# -- mapping -----------------------------------------------------------------------------------


def test_rest_and_event_tickets_map_to_the_same_record() -> None:
    rest = {"id": 42, "subject": "Refund", "status": "pending", "priority": "urgent", "assignee_id": 7, "tags": ["a"]}
    event = {
        "id": "42",
        "subject": "Refund",
        "status": "PENDING",
        "priority": "URGENT",
        "assignee_id": "7",
        "tags": ["a"],
    }
    cfg = config()
    assert ticket_record(rest, system=NAME, config=cfg) == ticket_record(event, system=NAME, config=cfg)
    record = ticket_record(rest, system=NAME, config=cfg)
    assert (record.url, record.assignee) == ("https://acme.zendesk.com/agent/tickets/42", "agent 7")


def test_a_tickets_visibility_is_the_accounts_whatever_its_comments() -> None:
    """`is_public: false` (only internal notes so far, as on a ticket threadlink opened) says what
    the requester sees, not the organisation: the card still shows where the thread is."""
    cfg = config(default_visibility="internal")
    assert ticket_record({"id": 1, "is_public": False}, system=NAME, config=cfg).visibility == "internal"


def test_rest_comments_map_public_and_internal_and_own() -> None:
    cfg = config()
    public = comment_record("1", {"id": 5, "public": True, "author_id": 9, "plain_body": "hi"}, system=NAME, config=cfg)
    internal = comment_record("1", {"id": 6, "public": False, "author_id": 9}, system=NAME, config=cfg, own_user_id="9")
    assert (public.public, public.visibility, public.body) == (True, "internal", "hi")
    assert (internal.public, internal.visibility, internal.by_threadlink) == (False, "restricted", True)


# -- the export poller -------------------------------------------------------------------------


async def test_the_export_reads_pages_by_cursor_and_resumes_from_the_checkpoint(
    fake: FakeZendesk, publisher: RecordingPublisher
) -> None:
    fake.export_page_size = 2
    for n in range(5):
        await fake.put_ticket(f"Ticket {n}")
    start = int((datetime.now(UTC) - timedelta(hours=1)).timestamp())
    poller = ZendeskTicketExport(config(fake, max_pages_per_poll=2), context(publisher))
    try:
        first = await poller.poll({"start_time": start})
        assert [e.data.ref.key for _, _, e in first.events] == ["1", "2", "3", "4"] and first.more
        second = await poller.poll(first.cursor)  # as after a restart: only the checkpoint is kept
        assert [e.data.ref.key for _, _, e in second.events] == ["5"] and not second.more
        quiet = await poller.poll(second.cursor)
        assert quiet.events == [] and quiet.cursor == second.cursor
        fake.delete_ticket(2)
        await fake.put_ticket("Ticket 3, again", ticket_id=3, status="solved")
        changed = await poller.poll(quiet.cursor)
        assert [(e.data.ref.key, e.data.kind) for _, _, e in changed.events] == [("2", "missing"), ("3", "ticket")]
    finally:
        await poller.stop()
    exports = [r for r in fake.requests if r.path.endswith("/cursor.json")]
    assert exports[0].query == {"start_time": str(start)}
    assert all(set(r.query) == {"cursor"} for r in exports[1:])


async def test_the_first_poll_without_a_checkpoint_starts_a_minute_ago(fake: FakeZendesk) -> None:
    poller = ZendeskTicketExport(config(fake), context(RecordingPublisher()))
    result = await poller.poll(poller.initial_cursor)
    assert result.events == [] and fake.requests == []
    assert isinstance(result.cursor, dict)
    assert result.cursor["start_time"] <= datetime.now(UTC).timestamp() - 60


async def test_the_export_answered_429_is_backpressure_with_its_retry_after(fake: FakeZendesk) -> None:
    poller = ZendeskTicketExport(config(fake), context(RecordingPublisher()))
    fake.fail_next(429, retry_after=37, path_prefix="/api/v2/incremental")
    try:
        with pytest.raises(BackpressureError) as caught:
            await poller.poll({"start_time": 0})
    finally:
        await poller.stop()
    assert caught.value.retry_after == 37


# -- the sink ----------------------------------------------------------------------------------


def create(salt: str = "ada") -> CreateTicket:
    return CreateTicket(
        command_id=command_id_for("create_ticket", THREAD.id, salt),
        target=NAME,
        thread=THREAD,
        project="billing",
        summary="Refund  stuck\nfor Acme",
        description="Ada (slack): the refund is stuck",
    )


async def test_create_ticket_sends_the_documented_request_and_finds_before_creating(
    fake: FakeZendesk, publisher: RecordingPublisher
) -> None:
    sink = ZendeskSink(config(fake), context(publisher))
    try:
        made = await sink.execute(create(), envelope_of(create()))
        again = await sink.execute(create("grace"), envelope_of(create("grace")))
    finally:
        await sink.stop()
    assert fake.created == [1]
    assert made.created == again.created == RecordRef(system=NAME, key="1") and again.recovered
    post = next(r for r in fake.requests if r.method == "POST")
    ticket = post.json["ticket"]
    assert ticket["external_id"] == thread_external_id(THREAD)
    assert ticket["subject"] == "Refund stuck for Acme"
    assert ticket["comment"]["public"] is False and ticket["tags"] == [
        "threadlink",
        thread_external_id(THREAD),
        "billing",
    ]
    assert post.headers["Idempotency-Key"] == create().command_id


async def test_a_lost_create_answer_is_replayed_by_the_idempotency_key(fake: FakeZendesk) -> None:
    """Zendesk's idempotency: the same key and body answer the original ticket (`x-idempotency-lookup:
    hit`), another body with that key a 400."""
    client = ZendeskClient(config(fake))
    ticket = {"subject": "s", "comment": {"body": "b", "public": False}}
    try:
        first, replayed_first = await client.create_ticket(ticket, idempotency_key="k-1")
        second, replayed = await client.create_ticket(ticket, idempotency_key="k-1")
        with pytest.raises(FatalError, match="IdempotentRequestError"):
            await client.create_ticket({**ticket, "subject": "other"}, idempotency_key="k-1")
    finally:
        await client.aclose()
    assert (first["id"], replayed_first) == (second["id"], False) and replayed is True
    assert fake.created == [1]


async def test_add_comment_is_an_internal_note_by_default_and_recovers_an_unsure_attempt(fake: FakeZendesk) -> None:
    await fake.put_ticket("Checkout is down")
    sink = ZendeskSink(config(fake), context(RecordingPublisher()))
    command = AddComment(
        command_id="add_comment-1",
        target=NAME,
        record=RecordRef(system=NAME, key="1"),
        thread=THREAD,
        body="Discussed in a Slack thread",
        permalink="https://acme.slack.com/archives/C1/p1700000000000100",
    )
    try:
        fake.fail_next(503, path_prefix="/api/v2/tickets/1.json", method="PUT")
        with pytest.raises(RetriableError):
            await sink.execute(command, envelope_of(command))
        made = await sink.execute(command, envelope_of(command))
        sink.outcome_unknown(command.command_id)  # as after a crash: the ledger holds it as attempted
        again = await sink.execute(command, envelope_of(command))
    finally:
        await sink.stop()
    comments = fake.comments(1)
    assert [c["public"] for c in comments] == [True, False]  # the ticket's description, then the note
    assert comments[-1]["body"] == "Discussed in a Slack thread https://acme.slack.com/archives/C1/p1700000000000100"
    assert made.comment_id == again.comment_id == str(comments[-1]["id"]) and again.recovered


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthError), (403, FatalError), (422, SkippableError), (409, RetriableError), (429, BackpressureError)],
)
async def test_api_errors_are_classified(fake: FakeZendesk, status: int, error: type[Exception]) -> None:
    await fake.put_ticket("Checkout is down")
    client = ZendeskClient(config(fake))
    fake.fail_next(status, retry_after=3 if status == 429 else None)
    try:
        with pytest.raises(error) as caught:
            await client.get_ticket("1")
    finally:
        await client.aclose()
    assert TOKEN not in str(caught.value)


async def test_fetch_record_publishes_the_ticket_or_that_it_is_missing(
    fake: FakeZendesk, publisher: RecordingPublisher
) -> None:
    await fake.put_ticket("Checkout is down")
    sink = ZendeskSink(config(fake), context(publisher))
    try:
        for key in ("1", "99", "not-a-number"):
            command = FetchRecord(command_id=f"f-{key}", target=NAME, record=RecordRef(system=NAME, key=key))
            await sink.execute(command, envelope_of(command))
    finally:
        await sink.stop()
    assert [p.envelope.data.kind for p in publisher.published] == ["ticket", "missing", "missing"]
    assert [r.path for r in fake.requests] == ["/api/v2/tickets/1.json", "/api/v2/tickets/99.json"]


def test_a_comment_takes_its_tickets_lane_first() -> None:
    sink = ZendeskSink(config(), context(RecordingPublisher()))
    comment = AddComment(command_id="c", target=NAME, record=RecordRef(system=NAME, key="7"), body="x")
    assert [lane.name for lane in sink.lanes(comment)] == ["ticket:7", "account"]
    assert [lane.name for lane in sink.lanes(create())] == ["account"]


def test_the_plugin_builds_a_webhook_a_poller_and_a_sink() -> None:
    parts = build(config(), context(RecordingPublisher()))
    assert (len(parts.webhooks), [p.name for p in parts.pollers], parts.sink is not None) == (1, ["tickets"], True)


async def comment_event(fake: FakeZendesk) -> dict[str, Any]:
    """A `ticket.comment_added` payload about a new ticket's first comment."""
    ticket = await fake.put_ticket("Checkout is down")
    return fake.ticket_event("comment_added", ticket["id"], comment=fake.tickets[ticket["id"]].comments[-1])


async def test_concurrent_deliveries_of_one_event_publish_once(
    fake: FakeZendesk, publisher: RecordingPublisher
) -> None:
    payload = await comment_event(fake)
    webhook = source(publisher)
    answers = await asyncio.gather(
        *(webhook.handle(WebhookRequest(*reversed(fake.signed(payload)))) for _ in range(4))  # type: ignore[misc]
    )
    assert sorted(a.outcome for a in answers) == ["accepted"] + ["duplicate"] * 3
    assert [p.envelope.id for p in publisher.published] == [
        f"{NAME}:{payload['id']}",
        f"{NAME}:{payload['id']}:comment",
    ]


async def test_deliveries_published_before_a_restart_are_recognised(
    fake: FakeZendesk, publisher: RecordingPublisher
) -> None:
    payload = await comment_event(fake)
    asked: list[str] = []

    async def published_lately(topic: str, *, id_prefix: str, since_s: float) -> list[str]:
        asked.append(topic)
        return [f"{NAME}:{payload['id']}:comment"] if topic.endswith(".comments") else []

    ctx = ConnectorContext(
        name=NAME, topics=TopicNames(namespace="unit"), publisher=publisher, published_lately=published_lately
    )
    webhook = ZendeskWebhookSource(config(fake), ctx)
    await webhook.start()
    answer = await webhook.handle(WebhookRequest(*reversed(fake.signed(payload))))  # type: ignore[misc]
    assert answer.outcome == "duplicate" and publisher.attempts == 0
    assert asked == ["unit.records", "unit.records.comments"]
    assert webhook.own_user.id == str(fake.user_id)  # learned at start: its comments are threadlink's
