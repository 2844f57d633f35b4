"""The harness of every connector (see harness.py). A new connector adds its harness to HARNESSES."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from connectors.base import ConnectorContext, ConnectorParts, WebhookRequest, WebhookRoute, WebhookSource
from connectors.errors import ConnectorError, SkippableError
from sandbox.contracts.github import github_contract
from sandbox.contracts.jira import jira_contract
from sandbox.github_api import FakeGitHub
from sandbox.jira_api import FakeJira
from sandbox.matrix_api import FakeMatrix, Room
from sandbox.redmine_api import FakeRedmine
from sandbox.slack_api import FakeSlack
from sandbox.slack_api import sign as slack_sign
from sandbox.wordpress_api import FakeWordPress
from sandbox.zendesk_api import FakeZendesk, zendesk_time
from schemas.commands import AddComment, Command, FetchRecord, PostCard, command_id_for
from schemas.records import RecordRef, TicketRecord
from schemas.social import ThreadRef

from .harness import ConnectorHarness


def _without(headers: Mapping[str, str] | None, names: tuple[str, ...]) -> dict[str, str]:
    lowered = {name.lower() for name in names}
    return {k: v for k, v in (headers or {}).items() if k.lower() not in lowered}


def _card_in_thread(thread: ThreadRef) -> PostCard:
    """A social sink's sample command: PROJ-1's card, answering the thread's root."""
    record = TicketRecord(
        ref=RecordRef(system="jira", key="PROJ-1"),
        title="Checkout fails",
        status="In Progress",
        url="https://acme.atlassian.net/browse/PROJ-1",
    )
    return PostCard(
        command_id=command_id_for("post_card", thread.id, record.ref.id, 0),
        target=thread.platform,
        reply_key=record.ref.id,
        destination=thread,
        record=record,
        in_reply_to=thread.thread_id,
    )


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
        return _card_in_thread(
            ThreadRef(platform=ctx.name, workspace=stand_in.team_id, channel=self.CHANNEL, thread_id=root)
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
            # The sample command is then the one comment call the failure checks aim at; the
            # remote link beside it has tests of its own (test_jira_remote_links.py).
            "remote_links": False,
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


class GitHubHarness(ConnectorHarness):
    """Repository webhooks in (`X-Hub-Signature-256`), REST out (AddComment: one POST .../comments)."""

    kind: ClassVar[str] = "github"
    signature_headers = ("X-Hub-Signature-256",)

    TOKEN = "github_pat_conformance_not_real_0123456789"
    WEBHOOK_SECRET = "github-conformance-webhook-secret"
    REPO = "acme/shop"

    async def start_stand_in(self) -> FakeGitHub:
        fake = FakeGitHub(token=self.TOKEN, webhook_secret=self.WEBHOOK_SECRET, contract=github_contract())
        await fake.start()
        fake.add_repo(self.REPO, private=True)
        return fake

    def config(self, stand_in: FakeGitHub) -> Mapping[str, Any]:
        return {"api_url": stand_in.url, "token": self.TOKEN, "webhook_secret": self.WEBHOOK_SECRET}

    def secrets(self) -> tuple[str, ...]:
        return (self.TOKEN, self.WEBHOOK_SECRET)

    async def _issue(self, stand_in: FakeGitHub) -> None:
        if stand_in.issue(self.REPO, 1) is None:
            await stand_in.put_issue(self.REPO, "Checkout is down", assignee="ada", labels=["bug"])

    async def sample_webhook(self, stand_in: FakeGitHub) -> WebhookRequest:
        await self._issue(stand_in)
        body, headers = stand_in.signed("issues", stand_in.issue_event("opened", self.REPO, 1))
        return WebhookRequest(headers=headers, body=body)

    def sign(
        self, body: bytes, *, headers: Mapping[str, str] | None = None, secret: str | None = None
    ) -> WebhookRequest:
        digest = hmac.new((secret or self.WEBHOOK_SECRET).encode(), body, hashlib.sha256).hexdigest()
        kept = {"X-GitHub-Event": "issues", **_without(headers, self.signature_headers)}
        return WebhookRequest(headers={**kept, "X-Hub-Signature-256": f"sha256={digest}"}, body=body)

    def redelivery(self, request: WebhookRequest) -> WebhookRequest:
        # A redelivery (from the webhook's Recent Deliveries, or the API) keeps X-GitHub-Delivery.
        return self.sign(request.body, headers=request.headers)

    def malformed_bodies(self) -> dict[str, bytes]:
        return {
            **super().malformed_bodies(),
            "issues-without-action": json.dumps(
                {"issue": {"number": 1}, "repository": {"full_name": self.REPO}}
            ).encode(),
            "issues-without-repository": json.dumps({"action": "opened", "issue": {"number": 1}}).encode(),
            "issues-without-issue-number": json.dumps(
                {"action": "opened", "issue": {"title": "x"}, "repository": {"full_name": self.REPO}}
            ).encode(),
        }

    async def sample_command(self, stand_in: FakeGitHub, ctx: ConnectorContext) -> Command:
        await self._issue(stand_in)
        thread = ThreadRef(platform="slack", workspace="T0001", channel="C0CONFORM01", thread_id="1700000000.000100")
        key = f"{self.REPO}#1"
        return AddComment(
            command_id=command_id_for("add_comment", key, thread.id),
            target=ctx.name,
            record=RecordRef(system=ctx.name, key=key),
            thread=thread,
            body="Discussed in a Slack thread",
            permalink="https://acme.slack.com/archives/C0CONFORM01/p1700000000000100",
        )

    def fail_next_call(self, stand_in: FakeGitHub, status: int, *, retry_after: float | None = None) -> None:
        stand_in.fail_next(
            status, retry_after=retry_after, path_prefix=f"/repos/{self.REPO}/issues/1/comments", method="POST"
        )

    def unsupported_command(self, ctx: ConnectorContext) -> Command:
        thread = ThreadRef(platform="slack", workspace="T0001", channel="C0CONFORM01", thread_id="1700000000.000100")
        return PostCard(
            command_id="post_card-conformance",
            target=ctx.name,
            destination=thread,
            record=TicketRecord(ref=RecordRef(system=ctx.name, key=f"{self.REPO}#1"), title="Checkout is down"),
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


class OpcuaHarness(MqttHarness):
    """OPC UA too is a stream source only (no webhook, no sink): the suite's checks are skipped
    for it. Its source is tested against a real asyncua server in
    tests/integration/test_opcua_source.py."""

    kind = "opcua"

    def config(self, stand_in: Any) -> Mapping[str, Any]:
        mapping = {"node": "ns=2;s=Line1.Press3.State", "kind": "machine_state", "key": "press-3", "field": "state"}
        return {
            "endpoint": "opc.tcp://127.0.0.1:4840/",
            "username": "threadlink",
            "password": "opcua-conformance-secret",
            "mappings": [mapping],
        }

    def secrets(self) -> tuple[str, ...]:
        return ("opcua-conformance-secret",)

    def malformed_bodies(self) -> dict[str, bytes]:
        return {}  # no webhook: bad OPC UA values are dead-lettered (test_opcua_source.py)


class MatrixHarness(ConnectorHarness):
    """Application service transactions in (`Authorization: Bearer <hs_token>`), client-server API
    out as the service's user (PostCard: one PUT .../send/m.room.message/{txnId})."""

    kind: ClassVar[str] = "matrix"
    signature_headers = ("Authorization",)
    signs_body = False  # a bearer hs_token, not a signature: a tampered body cannot be told apart

    AS_TOKEN = "matrix-conformance-as-token-not-real"
    HS_TOKEN = "matrix-conformance-hs-token-not-real"
    ROUTE = WebhookRoute("PUT", "/_matrix/app/v1/transactions/{txnId}")
    USER = "@ada:localhost"

    async def start_stand_in(self) -> FakeMatrix:
        fake = FakeMatrix(as_token=self.AS_TOKEN)
        await fake.start()
        fake.add_room(members=(self.USER,))
        return fake

    def _room(self, stand_in: FakeMatrix) -> Room:
        return next(iter(stand_in.rooms.values()))

    def config(self, stand_in: FakeMatrix) -> Mapping[str, Any]:
        return {
            "homeserver_url": stand_in.url,
            "server_name": "localhost",  # the stand-in's
            "as_token": self.AS_TOKEN,
            "hs_token": self.HS_TOKEN,
        }

    def secrets(self) -> tuple[str, ...]:
        return (self.AS_TOKEN, self.HS_TOKEN)

    async def sample_webhook(self, stand_in: FakeMatrix) -> WebhookRequest:
        event = stand_in.post_user_message(self._room(stand_in), self.USER, "Checkout fails again, see PROJ-1")
        txn_id, body = stand_in.transaction([event])
        request = self.sign(body, headers={"Content-Type": "application/json"})
        request.path_params = {"txnId": txn_id}
        return request

    def sign(
        self, body: bytes, *, headers: Mapping[str, str] | None = None, secret: str | None = None
    ) -> WebhookRequest:
        # A fresh txnId per body: what the homeserver sends anew (a redelivery keeps the request's).
        txn_id = hashlib.sha256(body).hexdigest()[:16]
        return WebhookRequest(
            headers={**_without(headers, self.signature_headers), "Authorization": f"Bearer {secret or self.HS_TOKEN}"},
            body=body,
            method="PUT",
            path_params={"txnId": txn_id},
            route=self.ROUTE,
        )

    def malformed_bodies(self) -> dict[str, bytes]:
        event = {"type": "m.room.message", "room_id": "!r:localhost", "sender": self.USER, "content": {}}
        return {
            **super().malformed_bodies(),
            "without-events": json.dumps({"ephemeral": []}).encode(),
            "events-not-a-list": json.dumps({"events": {"0": event}}).encode(),
        }

    async def sample_command(self, stand_in: FakeMatrix, ctx: ConnectorContext) -> Command:
        room = self._room(stand_in)
        root = stand_in.post_user_message(room, self.USER, "Is PROJ-1 back?")["event_id"]
        return _card_in_thread(
            ThreadRef(platform=ctx.name, workspace=stand_in.server_name, channel=room.room_id, thread_id=root)
        )

    def fail_next_call(self, stand_in: FakeMatrix, status: int, *, retry_after: float | None = None) -> None:
        stand_in.fail_next(status, retry_after=retry_after, path_contains="/send/")

    def expected_error(self, status: int, default: type[ConnectorError]) -> type[ConnectorError]:
        # 403 M_FORBIDDEN is about the room (not joined, no power there), not the credential: that
        # one command is skipped with the reason; a refused as_token is a 401 (AuthError, fatal).
        return SkippableError if status == 403 else default

    def unsupported_command(self, ctx: ConnectorContext) -> Command:
        thread = ThreadRef(platform=ctx.name, workspace="localhost", channel="!r:localhost", thread_id="$root")
        return AddComment(
            command_id="add_comment-conformance",
            target=ctx.name,
            record=RecordRef(system="jira", key="PROJ-1"),
            thread=thread,
            body="Discussed in a Matrix thread",
        )


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


class WordPressHarness(_NoWebhookHarness):
    """No webhooks (WordPress has none: its poller is tested against a real WordPress in
    tests/integration/test_wordpress.py); REST out (FetchRecord of a post without terms: one
    GET /wp/v2/posts/N)."""

    kind = "wordpress"

    USERNAME = "threadlink"
    APP_PASSWORD = "conf ormA nceP assw ordN otRl"

    async def start_stand_in(self) -> FakeWordPress:
        fake = FakeWordPress(username=self.USERNAME, app_password=self.APP_PASSWORD)
        await fake.start()
        return fake

    def config(self, stand_in: FakeWordPress) -> Mapping[str, Any]:
        return {"base_url": stand_in.url, "username": self.USERNAME, "app_password": self.APP_PASSWORD}

    def secrets(self) -> tuple[str, ...]:
        token = base64.b64encode(f"{self.USERNAME}:{self.APP_PASSWORD}".encode()).decode()
        return (self.APP_PASSWORD, token)

    async def sample_command(self, stand_in: FakeWordPress, ctx: ConnectorContext) -> Command:
        post = stand_in.posts.get(1) or stand_in.put_post("Checkout runbook", "<p>Restart it.</p>", categories=[])
        ref = RecordRef(system=ctx.name, key=str(post["id"]))
        return FetchRecord(command_id=command_id_for("fetch_record", ref.id), target=ctx.name, record=ref)

    def fail_next_call(self, stand_in: FakeWordPress, status: int, *, retry_after: float | None = None) -> None:
        stand_in.fail_next(status, retry_after=retry_after, path_prefix="/wp-json/wp/v2/posts/1")

    def unsupported_command(self, ctx: ConnectorContext) -> Command:
        thread = ThreadRef(platform="slack", workspace="T0001", channel="C0CONFORM01", thread_id="1700000000.000100")
        return AddComment(
            command_id="add_comment-conformance",
            target=ctx.name,
            record=RecordRef(system=ctx.name, key="1"),
            thread=thread,
            body="Discussed in a Slack thread",
        )


class ZendeskHarness(ConnectorHarness):
    """Ticket-event webhooks in (`X-Zendesk-Webhook-Signature` over the timestamp and the body),
    Tickets API out (AddComment: one PUT /api/v2/tickets/{id}.json). Zendesk's OpenAPI file is
    not kept (../shared/specs/zendesk/README.md): FakeZendesk checks the documented formats."""

    kind = "zendesk"
    signature_headers = ("X-Zendesk-Webhook-Signature", "X-Zendesk-Webhook-Signature-Timestamp")

    EMAIL = "threadlink@example.com"
    API_TOKEN = "zendesk-conformance-token-not-real"
    WEBHOOK_SECRET = "zendesk-conformance-signing-secret"

    async def start_stand_in(self) -> FakeZendesk:
        fake = FakeZendesk(email=self.EMAIL, api_token=self.API_TOKEN, webhook_secret=self.WEBHOOK_SECRET)
        await fake.start()
        return fake

    def config(self, stand_in: FakeZendesk) -> Mapping[str, Any]:
        return {
            "base_url": stand_in.url,
            "email": self.EMAIL,
            "api_token": self.API_TOKEN,
            "webhook_secret": self.WEBHOOK_SECRET,
        }

    def secrets(self) -> tuple[str, ...]:
        basic = base64.b64encode(f"{self.EMAIL}/token:{self.API_TOKEN}".encode()).decode()
        return (self.API_TOKEN, self.WEBHOOK_SECRET, basic)

    async def _ticket(self, stand_in: FakeZendesk) -> int:
        if stand_in.ticket(1) is None:
            await stand_in.put_ticket("Checkout is down", priority="high")
        return 1

    async def sample_webhook(self, stand_in: FakeZendesk) -> WebhookRequest:
        ticket_id = await self._ticket(stand_in)
        body, headers = stand_in.signed(stand_in.ticket_event("status_changed", ticket_id))
        return WebhookRequest(headers=headers, body=body)

    def sign(
        self, body: bytes, *, headers: Mapping[str, str] | None = None, secret: str | None = None
    ) -> WebhookRequest:
        timestamp = zendesk_time(datetime.now(UTC))
        signed = timestamp.encode() + body
        digest = base64.b64encode(hmac.new((secret or self.WEBHOOK_SECRET).encode(), signed, hashlib.sha256).digest())
        return WebhookRequest(
            headers={
                **_without(headers, self.signature_headers),
                "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
                "X-Zendesk-Webhook-Signature": digest.decode(),
            },
            body=body,
        )

    def redelivery(self, request: WebhookRequest) -> WebhookRequest:
        # Zendesk retries a failed delivery with the same payload (its event id), signed anew.
        return self.sign(request.body, headers=request.headers)

    def malformed_bodies(self) -> dict[str, bytes]:
        event = {"type": "zen:event-type:ticket.status_changed", "id": "5e4f6b2a-0000-4000-8000-000000000001"}
        return {
            **super().malformed_bodies(),
            "without-type": json.dumps({"id": "x", "detail": {"id": "1"}}).encode(),
            "ticket-event-without-detail": json.dumps(event).encode(),
            "ticket-event-without-ticket-id": json.dumps({**event, "detail": {"subject": "x"}}).encode(),
            "comment-added-without-comment": json.dumps(
                {**event, "type": "zen:event-type:ticket.comment_added", "detail": {"id": "1"}, "event": {}}
            ).encode(),
        }

    async def sample_command(self, stand_in: FakeZendesk, ctx: ConnectorContext) -> Command:
        ticket_id = await self._ticket(stand_in)
        thread = ThreadRef(platform="slack", workspace="T0001", channel="C0CONFORM01", thread_id="1700000000.000100")
        return AddComment(
            command_id=command_id_for("add_comment", str(ticket_id), thread.id),
            target=ctx.name,
            record=RecordRef(system=ctx.name, key=str(ticket_id)),
            thread=thread,
            body="Discussed in a Slack thread",
            permalink="https://acme.slack.com/archives/C0CONFORM01/p1700000000000100",
        )

    def fail_next_call(self, stand_in: FakeZendesk, status: int, *, retry_after: float | None = None) -> None:
        stand_in.fail_next(status, retry_after=retry_after, path_prefix="/api/v2/tickets/1.json", method="PUT")

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
HARNESSES: tuple[ConnectorHarness, ...] = (
    SlackHarness(),
    JiraHarness(),
    GitHubHarness(),
    MqttHarness(),
    MatrixHarness(),
    OpcuaHarness(),
    RedmineHarness(),
    WordPressHarness(),
    ZendeskHarness(),
)
