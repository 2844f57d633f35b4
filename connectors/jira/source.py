"""Jira Cloud webhooks: issues created, updated or deleted, and comments added.

Signing scheme (Jira Cloud admin webhooks registered with a secret, since 2024): the header
`X-Hub-Signature: sha256=<hex>` carries HMAC-SHA256 of the raw body keyed with the secret
(WebSub `method=signature` form), and `X-Atlassian-Webhook-Identifier` names the delivery,
unchanged across its retries (`X-Atlassian-Webhook-Retry` counts them).
  https://developer.atlassian.com/cloud/jira/platform/webhooks/#secure-admin-webhooks
  (same scheme in Jira Data Center: https://confluence.atlassian.com/adminjiraserver/managing-webhooks-938846912.html;
  header semantics as captured by jira.js: https://mrrefactoring.github.io/jira.js/api/interfaces/webhooks.WebhookHeaders.html)
Webhooks registered by OAuth/Connect apps carry a JWT instead and are not signed this way:
register an admin webhook (System > WebHooks) with a secret for threadlink.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from connectors.base import ConnectorContext, Unauthorized, WebhookRequest, WebhookResponse, WebhookSource, header_value
from connectors.errors import ConnectorError, SkippableError
from connectors.jira.client import JiraClient
from connectors.jira.config import JiraConfig
from connectors.jira.mapping import (
    comment_from_webhook,
    issue_key,
    parse_jira_time,
    project_of_key,
    ticket_from_issue,
)
from connectors.runtime.payloads import parse_json_object
from connectors.runtime.signatures import hub_signature, hub_signature_problem
from schemas import events
from schemas.envelope import Envelope
from schemas.records import RecordComment, RecordEvent, RecordMissing, RecordRef, version_of

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature"
DELIVERY_HEADER = "X-Atlassian-Webhook-Identifier"

ISSUE_UPSERTS = ("jira:issue_created", "jira:issue_updated")
ISSUE_DELETED = "jira:issue_deleted"
COMMENT_CREATED = "comment_created"
#: A comment changed or removed: the same comment again, marked edited or deleted.
COMMENT_ACTIONS = {COMMENT_CREATED: "added", "comment_updated": "edited", "comment_deleted": "deleted"}


def sign_payload(body: bytes, secret: str) -> str:
    """The `X-Hub-Signature` value Jira sends for `body`: `sha256=<hex HMAC-SHA256>`."""
    return hub_signature(body, secret)


def signature_problem(body: bytes, secret: str, header: str | None) -> str | None:
    """Why `header` is not a valid signature of `body`, or None when it is. Constant-time."""
    return hub_signature_problem(body, secret, header, header_name=SIGNATURE_HEADER, vendor="Jira")


class JiraWebhookSource(WebhookSource):
    """Served at `/webhooks/<connector name>`; register that URL as a Jira admin webhook with
    the events `jira:issue_created`, `jira:issue_updated`, `jira:issue_deleted`, `comment_created`,
    `comment_updated`, `comment_deleted`."""

    path = ""

    def __init__(self, config: JiraConfig, ctx: ConnectorContext) -> None:
        self.config = config
        self.ctx = ctx
        self.own_account_id: str | None = None

    async def start(self) -> None:
        """Learn threadlink's own Jira account (GET myself), so the comments it writes are known
        as its own when their webhooks come back. Without it, they are known by the email only."""
        client = JiraClient(self.config)
        try:
            me = await client.myself()
            account_id = me.get("accountId")
            self.own_account_id = account_id if isinstance(account_id, str) else None
        except ConnectorError as exc:
            log.warning("jira: cannot learn threadlink's own account (%s); its comments are known by email only", exc)
        finally:
            await client.aclose()

    def verify(self, request: WebhookRequest) -> None:
        secret = self.config.webhook_secret
        if secret is None:  # not served without one (connector.py); refused should it be reached
            raise Unauthorized("this Jira connector has no webhook_secret")
        problem = signature_problem(
            request.body, secret.get_secret_value(), header_value(request.headers, SIGNATURE_HEADER)
        )
        if problem:
            raise Unauthorized(problem)

    async def handle(self, request: WebhookRequest) -> WebhookResponse:
        payload = parse_json_object(request.body, what="jira webhook body")
        event = payload.get("webhookEvent")
        if not isinstance(event, str) or not event:
            raise SkippableError("jira webhook without webhookEvent")
        envelope: Envelope[Any]
        if event in ISSUE_UPSERTS:
            envelope, topic = self._issue_upserted(payload, event, request), self.ctx.topics.records
        elif event == ISSUE_DELETED:
            envelope, topic = self._issue_deleted(payload, event, request), self.ctx.topics.records
        elif event in COMMENT_ACTIONS:
            envelope, topic = self._comment_event(payload, event, request), self.ctx.topics.record_comments
        else:
            # Jira sends what the webhook subscribes to; the rest is acknowledged so it is not retried.
            return WebhookResponse(json={"ignored": event}, outcome="ignored")
        # Awaited before answering: a 200 means the broker has it; a PublishError answers 503
        # and Jira delivers again (with the same identifier, hence the same envelope id).
        await self.ctx.publisher.publish(topic, envelope.data.ref.id, envelope)
        return WebhookResponse(json={"published": envelope.id})

    # -- one event kind each -------------------------------------------------------------

    def _issue_upserted(self, payload: Mapping[str, Any], event: str, request: WebhookRequest) -> Envelope[Any]:
        record = ticket_from_issue(payload.get("issue"), system=self.ctx.name, config=self.config)
        return Envelope[RecordEvent].wrap(
            record,
            type=events.RECORD_UPSERTED.format(kind=record.kind),
            source_system=self.ctx.name,
            subject=record.ref.id,
            id=self._event_id(payload, event, request),
            occurred_at=parse_jira_time(payload.get("timestamp")) or record.updated_at,
            visibility=record.visibility,
        )

    def _issue_deleted(self, payload: Mapping[str, Any], event: str, request: WebhookRequest) -> Envelope[Any]:
        issue = payload.get("issue")
        key = issue_key(issue)
        fields = issue.get("fields") if isinstance(issue, Mapping) else None
        project = fields.get("project") if isinstance(fields, Mapping) else None
        project_key = project.get("key") if isinstance(project, Mapping) else None
        deleted_at = parse_jira_time(payload.get("timestamp"))
        missing = RecordMissing(
            ref=RecordRef(system=self.ctx.name, key=key), reason="deleted", version=version_of(deleted_at)
        )
        return Envelope[RecordEvent].wrap(
            missing,
            type=events.RECORD_MISSING,
            source_system=self.ctx.name,
            subject=missing.ref.id,
            id=self._event_id(payload, event, request),
            occurred_at=deleted_at,
            visibility=self.config.visibility_of(project_key if isinstance(project_key, str) else project_of_key(key)),
        )

    def _comment_event(self, payload: Mapping[str, Any], event: str, request: WebhookRequest) -> Envelope[Any]:
        key = issue_key(payload.get("issue"))
        project_visibility = self.config.visibility_of(project_of_key(key))
        comment = comment_from_webhook(
            payload,
            system=self.ctx.name,
            project_visibility=project_visibility,
            own_account_id=self.own_account_id,
            own_email=self.config.email,
        ).model_copy(update={"action": COMMENT_ACTIONS[event]})
        if comment.action == "deleted":  # its words are gone in Jira: they are not carried on either
            deleted_at = version_of(parse_jira_time(payload.get("timestamp")))
            comment = comment.model_copy(update={"body": "", "version": max(comment.version, deleted_at)})
        return Envelope[RecordComment].wrap(
            comment,
            type=events.RECORD_COMMENT.format(action=comment.action),
            source_system=self.ctx.name,
            subject=comment.ref.id,
            id=self._event_id(payload, event, request),
            occurred_at=parse_jira_time(payload.get("timestamp")) or comment.created_at,
            visibility=comment.visibility,
        )

    def _event_id(self, payload: Mapping[str, Any], event: str, request: WebhookRequest) -> str:
        """Jira's delivery identifier (the same on every retry); without it, what identifies
        the event in the payload, so a redelivered body still gets the same id."""
        delivery = header_value(request.headers, DELIVERY_HEADER)
        if delivery:
            return f"{self.ctx.name}:{delivery.strip()}"
        issue = payload.get("issue")
        issue_id = issue.get("id") if isinstance(issue, Mapping) else None
        timestamp = payload.get("timestamp")
        if issue_id is None or timestamp is None:
            return f"{self.ctx.name}:{event}:sha256:{hashlib.sha256(request.body).hexdigest()[:32]}"
        parts = [self.ctx.name, event, str(issue_id), str(timestamp)]
        comment = payload.get("comment")
        if isinstance(comment, Mapping) and comment.get("id") is not None:
            parts.append(str(comment["id"]))
        return ":".join(parts)
