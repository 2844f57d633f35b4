"""GitHub webhooks: `issues` and `issue_comment` deliveries become records and record comments.

Signing scheme (https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries):
`X-Hub-Signature-256: sha256=<hex>` is HMAC-SHA256 of the raw body keyed with the webhook's
secret, compared in constant time. `X-GitHub-Event` names the event (`issues`, `issue_comment`,
`ping`, ...), `X-GitHub-Delivery` the delivery (a GUID, the same when GitHub or a person
redelivers it): it is the envelope id, and each delivery is published once per process (and read
back from Kafka at start, so a restarted replica recognises redeliveries too).

`ping` (sent when the webhook is created) is answered 200; events other than the two are
acknowledged and ignored, so GitHub does not mark the hook failing; so are actions threadlink
has no use for (a comment pinned). The legacy SHA-1 `X-Hub-Signature` is not accepted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from connectors.base import ConnectorContext, Unauthorized, WebhookRequest, WebhookResponse, WebhookSource, header_value
from connectors.errors import SkippableError
from connectors.github.config import GitHubConfig
from connectors.github.mapping import (
    COMMENT_ACTIONS,
    comment_from_webhook,
    issue_key,
    parse_github_time,
    repo_of,
    ticket_from_issue,
)
from connectors.runtime.dedup import InFlight, RecentIds
from connectors.runtime.payloads import parse_json_object
from connectors.runtime.recent import remember_published
from connectors.runtime.signatures import hub_signature, hub_signature_problem
from schemas import events
from schemas.envelope import Envelope
from schemas.records import RecordComment, RecordEvent, RecordMissing, RecordRef, version_of

SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"


def sign_payload(body: bytes, secret: str) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body`: `sha256=<hex HMAC-SHA256>`."""
    return hub_signature(body, secret)


def signature_problem(body: bytes, secret: str, header: str | None) -> str | None:
    """Why `header` is not a valid signature of `body`, or None when it is. Constant-time."""
    return hub_signature_problem(body, secret, header, header_name=SIGNATURE_HEADER, vendor="GitHub")


class GitHubWebhookSource(WebhookSource):
    """Served at `/webhooks/<connector name>`: the webhook's Payload URL (content type
    application/json, with a secret, events Issues and Issue comments)."""

    path = ""

    def __init__(self, config: GitHubConfig, ctx: ConnectorContext, *, recent: RecentIds | None = None) -> None:
        self.config = config
        self.ctx = ctx
        self._recent = recent if recent is not None else RecentIds()
        self._in_flight = InFlight()  # a redelivery while its first delivery publishes waits for it

    async def start(self) -> None:
        """Remember the deliveries published lately (by this replica before a restart, or by
        another), so their redeliveries publish nothing new."""
        topics = (self.ctx.topics.records, self.ctx.topics.record_comments)
        await remember_published(self.ctx, self._recent, self.config.redelivery_window_s, topics=topics)

    def verify(self, request: WebhookRequest) -> None:
        problem = signature_problem(
            request.body, self.config.webhook_secret.get_secret_value(), header_value(request.headers, SIGNATURE_HEADER)
        )
        if problem:
            raise Unauthorized(problem)

    async def handle(self, request: WebhookRequest) -> WebhookResponse:
        event = (header_value(request.headers, EVENT_HEADER) or "").strip()
        if not event:
            raise SkippableError(f"github webhook without {EVENT_HEADER}")
        payload = parse_json_object(request.body, what="github webhook body")
        if event == "ping":
            return WebhookResponse(json={"pong": True}, outcome="ignored")
        if event not in ("issues", "issue_comment"):
            return WebhookResponse(json={"ignored": event[:40]}, outcome="ignored")
        action = payload.get("action")
        if not isinstance(action, str) or not action:
            raise SkippableError(f"github {event} webhook without an action")
        if event == "issue_comment" and action not in COMMENT_ACTIONS:
            return WebhookResponse(json={"ignored": f"{event}.{action[:40]}"}, outcome="ignored")

        delivery = self._delivery(request)
        if self._recent.seen(delivery):
            return WebhookResponse(json={"duplicate": delivery}, outcome="duplicate")
        envelope_id = f"{self.ctx.name}:{delivery}"
        if event == "issue_comment":
            envelope, topic = self._comment(payload, envelope_id), self.ctx.topics.record_comments
        elif action in ("deleted", "transferred"):
            envelope, topic = self._issue_gone(payload, action, envelope_id), self.ctx.topics.records
        else:
            envelope, topic = self._issue(payload, envelope_id), self.ctx.topics.records
        # Its failure is this answer's failure too (GitHub may redeliver); a client that hangs up
        # does not cancel a publish half-way.
        if not await self._in_flight.once(delivery, lambda: self._publish(delivery, topic, envelope)):
            return WebhookResponse(json={"duplicate": delivery}, outcome="duplicate")
        return WebhookResponse(json={"published": envelope.id})

    async def _publish(self, delivery: str, topic: str, envelope: Envelope[Any]) -> None:
        assert envelope.subject is not None
        await self.ctx.publisher.publish(topic, envelope.subject, envelope)
        self._recent.remember(delivery)  # only now: a failed publish is a 503, and GitHub's redelivery publishes

    def _delivery(self, request: WebhookRequest) -> str:
        """GitHub's delivery GUID; without one (a proxy dropped it), the body's digest, so the
        same body is still one event."""
        delivery = (header_value(request.headers, DELIVERY_HEADER) or "").strip()
        if delivery and len(delivery) <= 100 and delivery.isascii() and delivery.isprintable():
            return delivery
        return "sha256:" + hashlib.sha256(request.body).hexdigest()[:32]

    # -- one event kind each -------------------------------------------------------------

    def _issue(self, payload: Mapping[str, Any], envelope_id: str) -> Envelope[Any]:
        repo, private = repo_of(payload)
        record = ticket_from_issue(
            payload.get("issue"), repo=repo, system=self.ctx.name, config=self.config, private=private
        )
        return Envelope[RecordEvent].wrap(
            record,
            type=events.RECORD_UPSERTED.format(kind=record.kind),
            source_system=self.ctx.name,
            subject=record.ref.id,
            id=envelope_id,
            occurred_at=record.updated_at,
            visibility=record.visibility,
        )

    def _issue_gone(self, payload: Mapping[str, Any], action: str, envelope_id: str) -> Envelope[Any]:
        """Deleted, or transferred to another repository (its new key arrives with the new
        repository's own webhook). Newer than the issue's last state, by one millisecond:
        GitHub does not say when it was deleted, and a redelivery must decide the same."""
        repo, private = repo_of(payload)
        issue = payload.get("issue")
        key = issue_key(repo, issue)
        updated_at = parse_github_time(issue.get("updated_at")) if isinstance(issue, Mapping) else None
        missing = RecordMissing(
            ref=RecordRef(system=self.ctx.name, key=key),
            reason=action,
            version=version_of(updated_at) + 1,
        )
        return Envelope[RecordEvent].wrap(
            missing,
            type=events.RECORD_MISSING,
            source_system=self.ctx.name,
            subject=missing.ref.id,
            id=envelope_id,
            occurred_at=updated_at,
            visibility=self.config.visibility_of(repo, private=private),
        )

    def _comment(self, payload: Mapping[str, Any], envelope_id: str) -> Envelope[Any]:
        repo, private = repo_of(payload)
        comment = comment_from_webhook(
            payload,
            repo=repo,
            system=self.ctx.name,
            visibility=self.config.visibility_of(repo, private=private),
            own_login=self.config.bot_login,
        )
        return Envelope[RecordComment].wrap(
            comment,
            type=events.RECORD_COMMENT.format(action=comment.action),
            source_system=self.ctx.name,
            subject=comment.ref.id,
            id=envelope_id,
            occurred_at=comment.created_at,
            visibility=comment.visibility,
        )
