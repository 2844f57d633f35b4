"""The harness of every connector (see harness.py). A new connector adds its harness to HARNESSES."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from connectors.base import ConnectorContext, ConnectorParts, WebhookRequest, WebhookSource
from sandbox.contracts.jira import jira_contract
from sandbox.jira_api import FakeJira
from sandbox.redmine_api import FakeRedmine
from sandbox.slack_api import FakeSlack
from sandbox.slack_api import sign as slack_sign
from schemas.commands import AddComment, Command, PostCard, command_id_for
from schemas.records import RecordRef, TicketRecord
from schemas.social import ThreadRef

from .harness import ConnectorHarness


def _without(headers: Mapping[str, str] | None, names: tuple[str, ...]) -> dict[str, str]:
    lowered = {name.lower() for name in names}
    return {k: v for k, v in (headers or {}).items() if k.lower() not in lowered}


class SlackHarness(ConnectorHarness):
    """Events API in (v0-signed `event_callback`s), Web API out (PostCard: one chat.postMessage)."""

    kind: ClassVar[str] = "slack"
    signature_headers = ("X-Slack-Signature", "X-Slack-Request-Timestamp")
    time_fields = ("event_time",)

    SIGNING_SECRET = "conformance-signing-secret"
    BOT_TOKEN = "xoxb-conformance-token-not-real"
    CHANNEL = "C0CONFORM01"

    async def start_stand_in(self) -> FakeSlack:
        # No events_url: events the fake sends are only recorded (fake.events), and the suite
        # hands them to the connector itself.
        fake = FakeSlack(signing_secret=self.SIGNING_SECRET, bot_token=self.BOT_TOKEN, retry_delays_s=(0, 0, 0))
        await fake.start()
        fake.add_channel(self.CHANNEL)
        return fake

    def webhook_of(self, parts: ConnectorParts) -> WebhookSource:
        """The Events API endpoint (the interactivity one has tests of its own)."""
        return parts.webhooks[0]

    def config(self, stand_in: FakeSlack) -> Mapping[str, Any]:
        return {"signing_secret": self.SIGNING_SECRET, "bot_token": self.BOT_TOKEN, "api_base_url": stand_in.api_url}

    def secrets(self) -> tuple[str, ...]:
        return (self.SIGNING_SECRET, self.BOT_TOKEN)

    async def sample_webhook(self, stand_in: FakeSlack) -> WebhookRequest:
        await stand_in.post_user_message(self.CHANNEL, "Checkout fails again, see PROJ-1")
        body = json.dumps(stand_in.events[-1]).encode()
        return self.sign(body, headers={"Content-Type": "application/json"})

    def sign(
        self, body: bytes, *, headers: Mapping[str, str] | None = None, secret: str | None = None
    ) -> WebhookRequest:
        timestamp = str(int(time.time()))
        signature = slack_sign(secret or self.SIGNING_SECRET, timestamp, body)
        return WebhookRequest(
            headers={
                **_without(headers, self.signature_headers),
                "X-Slack-Request-Timestamp": timestamp,
                "X-Slack-Signature": signature,
            },
            body=body,
        )

    def redelivery(self, request: WebhookRequest) -> WebhookRequest:
        # Slack signs each attempt anew and says which retry it is (api.slack.com/apis/events-api#retries).
        retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        return self.sign(request.body, headers={**request.headers, **retry})

    def malformed_bodies(self) -> dict[str, bytes]:
        no_event_id = {"type": "event_callback", "team_id": "T0001", "event": {"type": "message", "text": "hi"}}
        no_channel = {
            "type": "event_callback",
            "team_id": "T0001",
            "event_id": "Ev0MALFORMED",
            "event": {"type": "message", "user": "U0001", "text": "hi"},
        }
        return {
            **super().malformed_bodies(),
            "event-callback-without-event-id": json.dumps(no_event_id).encode(),
            "message-without-channel-and-ts": json.dumps(no_channel).encode(),
        }

    async def sample_command(self, stand_in: FakeSlack, ctx: ConnectorContext) -> Command:
        root = await stand_in.post_user_message(self.CHANNEL, "Is PROJ-1 back?")
        record = TicketRecord(
            ref=RecordRef(system="jira", key="PROJ-1"),
            title="Checkout fails",
            status="In Progress",
            url="https://acme.atlassian.net/browse/PROJ-1",
        )
        thread = ThreadRef(platform=ctx.name, workspace=stand_in.team_id, channel=self.CHANNEL, thread_id=root)
        return PostCard(
            command_id=command_id_for("post_card", thread.id, record.ref.id, 0),
            target=ctx.name,
            reply_key=record.ref.id,
            destination=thread,
            record=record,
            in_reply_to=root,
        )

    def fail_next_call(self, stand_in: FakeSlack, status: int, *, retry_after: float | None = None) -> None:
        # The body Slack sends with such a status (none for a gateway's 5xx).
        error = {429: "ratelimited", 401: "invalid_auth", 403: "no_permission"}.get(status)
        stand_in.fail_next("chat.postMessage", error, status=status, retry_after=retry_after)

    def unsupported_command(self, ctx: ConnectorContext) -> Command:
        thread = ThreadRef(platform=ctx.name, workspace="T0001", channel=self.CHANNEL, thread_id="1700000000.000100")
        return AddComment(
            command_id="add_comment-conformance",
            target=ctx.name,
            record=RecordRef(system="jira", key="PROJ-1"),
            thread=thread,
            body="Discussed in a Slack thread",
        )


class JiraHarness(ConnectorHarness):
    """Admin webhooks in (`X-Hub-Signature`), REST v3 out (AddComment: one POST .../comment)."""

    kind: ClassVar[str] = "jira"
    signature_headers = ("X-Hub-Signature",)
    time_fields = ("timestamp",)

    EMAIL = "conformance-bot@example.com"
    API_TOKEN = "jira-conformance-token-not-real"
    WEBHOOK_SECRET = "jira-conformance-webhook-secret"
    ISSUE = "OPS-1"

    async def start_stand_in(self) -> FakeJira:
        fake = FakeJira(
            email=self.EMAIL, api_token=self.API_TOKEN, webhook_secret=self.WEBHOOK_SECRET, contract=jira_contract()
        )
        await fake.start()
        return fake

    def config(self, stand_in: FakeJira) -> Mapping[str, Any]:
        return {
            "base_url": stand_in.url,
            "email": self.EMAIL,
            "api_token": self.API_TOKEN,
            "webhook_secret": self.WEBHOOK_SECRET,
        }

    def secrets(self) -> tuple[str, ...]:
        basic = base64.b64encode(f"{self.EMAIL}:{self.API_TOKEN}".encode()).decode()
        return (self.API_TOKEN, self.WEBHOOK_SECRET, basic)

    async def _issue(self, stand_in: FakeJira) -> None:
        if stand_in.issue(self.ISSUE) is None:
            await stand_in.put_issue(self.ISSUE, "Checkout is down", status="In Progress", assignee="Ada Lovelace")

    async def sample_webhook(self, stand_in: FakeJira) -> WebhookRequest:
        await self._issue(stand_in)
        body, headers = stand_in.signed(stand_in.issue_event("jira:issue_created", self.ISSUE))
        return WebhookRequest(headers=headers, body=body)

    def sign(
        self, body: bytes, *, headers: Mapping[str, str] | None = None, secret: str | None = None
    ) -> WebhookRequest:
        digest = hmac.new((secret or self.WEBHOOK_SECRET).encode(), body, hashlib.sha256).hexdigest()
        return WebhookRequest(
            headers={**_without(headers, self.signature_headers), "X-Hub-Signature": f"sha256={digest}"}, body=body
        )

    def redelivery(self, request: WebhookRequest) -> WebhookRequest:
        # Jira retries with the same X-Atlassian-Webhook-Identifier and counts the retries.
        return self.sign(request.body, headers={**request.headers, "X-Atlassian-Webhook-Retry": "1"})

    def malformed_bodies(self) -> dict[str, bytes]:
        return {
            **super().malformed_bodies(),
            "without-webhook-event": json.dumps({"timestamp": 1709288430456, "issue": {"key": "OPS-1"}}).encode(),
            "issue-event-without-issue": json.dumps(
                {"timestamp": 1709288430456, "webhookEvent": "jira:issue_created"}
            ).encode(),
            "comment-event-without-comment": json.dumps(
                {"timestamp": 1709288430456, "webhookEvent": "comment_created", "issue": {"id": "1", "key": "OPS-1"}}
            ).encode(),
        }

    async def sample_command(self, stand_in: FakeJira, ctx: ConnectorContext) -> Command:
        await self._issue(stand_in)
        thread = ThreadRef(platform="slack", workspace="T0001", channel="C0CONFORM01", thread_id="1700000000.000100")
        return AddComment(
            command_id=command_id_for("add_comment", self.ISSUE, thread.id),
            target=ctx.name,
            record=RecordRef(system=ctx.name, key=self.ISSUE),
            thread=thread,
            body="Discussed in a Slack thread",
            permalink="https://acme.slack.com/archives/C0CONFORM01/p1700000000000100",
        )

    def fail_next_call(self, stand_in: FakeJira, status: int, *, retry_after: float | None = None) -> None:
        stand_in.fail_next(status, retry_after=retry_after, path_prefix=f"/rest/api/3/issue/{self.ISSUE}/comment")

    def unsupported_command(self, ctx: ConnectorContext) -> Command:
        thread = ThreadRef(platform="slack", workspace="T0001", channel="C0CONFORM01", thread_id="1700000000.000100")
        return PostCard(
            command_id="post_card-conformance",
            target=ctx.name,
            destination=thread,
            record=TicketRecord(ref=RecordRef(system=ctx.name, key=self.ISSUE), title="Checkout is down"),
            in_reply_to=thread.thread_id,
        )


class _NoStandIn:
    """MQTT has no webhook and no sink, so no HTTP stand-in: the suite's checks are skipped for it.
    Its stream source is tested against a real Mosquitto in tests/integration/test_mqtt_source.py."""

    requests: list[Any] = []

    def assert_no_violations(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class _NoWebhookHarness(ConnectorHarness):
    """A connector without webhook sources: the webhook checks are skipped, these never called."""

    signature_headers = ()

    async def sample_webhook(self, stand_in: Any) -> WebhookRequest:
        raise NotImplementedError

    def sign(
        self, body: bytes, *, headers: Mapping[str, str] | None = None, secret: str | None = None
    ) -> WebhookRequest:
        raise NotImplementedError

    def malformed_bodies(self) -> dict[str, bytes]:
        return {}


class MqttHarness(_NoWebhookHarness):
    kind = "mqtt"
    signature_headers = ()

    async def start_stand_in(self) -> _NoStandIn:
        return _NoStandIn()

    def config(self, stand_in: Any) -> Mapping[str, Any]:
        mapping = {"topic": "plant/{plant}/order/{order}/status", "kind": "production_order", "key": "{order}"}
        return {"host": "127.0.0.1", "password": "mqtt-conformance-secret", "mappings": [mapping]}

    def secrets(self) -> tuple[str, ...]:
        return ("mqtt-conformance-secret",)

    def malformed_bodies(self) -> dict[str, bytes]:
        return {}  # no webhook: malformed MQTT payloads are dead-lettered (test_mqtt_source.py)

    async def sample_command(self, stand_in: Any, ctx: ConnectorContext) -> Command:
        raise NotImplementedError

    def fail_next_call(self, stand_in: Any, status: int, *, retry_after: float | None = None) -> None:
        raise NotImplementedError

    def unsupported_command(self, ctx: ConnectorContext) -> Command:
        raise NotImplementedError


class RedmineHarness(_NoWebhookHarness):
    """No webhooks (Redmine has none: its poller is tested against a real Redmine in
    tests/integration/test_redmine.py); REST out (AddComment: one PUT /issues/N.json)."""

    kind = "redmine"

    API_KEY = "redmine-conformance-key-not-real"
    PROJECT = "ops"

    async def start_stand_in(self) -> FakeRedmine:
        fake = FakeRedmine(api_key=self.API_KEY)
        await fake.start()
        fake.put_project(self.PROJECT)
        return fake

    def config(self, stand_in: FakeRedmine) -> Mapping[str, Any]:
        return {"base_url": stand_in.url, "api_key": self.API_KEY, "projects": [self.PROJECT]}

    def secrets(self) -> tuple[str, ...]:
        return (self.API_KEY,)

    async def sample_command(self, stand_in: FakeRedmine, ctx: ConnectorContext) -> Command:
        issue = stand_in.issues.get(1) or stand_in.put_issue(self.PROJECT, "Checkout is down")
        thread = ThreadRef(platform="slack", workspace="T0001", channel="C0CONFORM01", thread_id="1700000000.000100")
        return AddComment(
            command_id=command_id_for("add_comment", str(issue["id"]), thread.id),
            target=ctx.name,
            record=RecordRef(system=ctx.name, key=str(issue["id"])),
            thread=thread,
            body="Discussed in a Slack thread",
            permalink="https://acme.slack.com/archives/C0CONFORM01/p1700000000000100",
        )

    def fail_next_call(self, stand_in: FakeRedmine, status: int, *, retry_after: float | None = None) -> None:
        stand_in.fail_next(status, retry_after=retry_after, path_prefix="/issues/1.json")

    def unsupported_command(self, ctx: ConnectorContext) -> Command:
        thread = ThreadRef(platform="slack", workspace="T0001", channel="C0CONFORM01", thread_id="1700000000.000100")
        return PostCard(
            command_id="post_card-conformance",
            target=ctx.name,
            destination=thread,
            record=TicketRecord(ref=RecordRef(system=ctx.name, key="1"), title="Checkout is down"),
            in_reply_to=thread.thread_id,
        )


#: Every connector's harness; the suite fails when a registered connector has none.
HARNESSES: tuple[ConnectorHarness, ...] = (SlackHarness(), JiraHarness(), MqttHarness(), RedmineHarness())
