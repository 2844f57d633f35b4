"""A local stand-in for the Zendesk Support (Ticketing) API v2 and its signed ticket-event webhooks,
for demos and tests. SANDBOX ONLY: nothing points at it unless a config or a test says so.

Zendesk's OpenAPI file cannot be kept here (../shared/specs/zendesk/README.md says why), so this
fake checks requests against Zendesk's documented formats, written down from these pages:

- auth: https://developer.zendesk.com/api-reference/introduction/security-and-auth/
  (Basic `<email>/token:<api_token>` or `Bearer <oauth token>`; anything else 401
  `{"error": "Couldn't authenticate you"}`);
- tickets: https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/
  (`POST /api/v2/tickets.json` 201, `PUT /api/v2/tickets/{id}.json` 200 with the update's `audit`,
  `GET /api/v2/tickets/{id}.json`, `GET /api/v2/tickets.json?external_id=`; a ticket's JSON);
- comments: https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_comments/
  (`GET /api/v2/tickets/{id}/comments.json`, cursor pagination `page[size]` / `page[after]`, see
  https://developer.zendesk.com/api-reference/introduction/pagination/);
- idempotency: https://developer.zendesk.com/api-reference/ticketing/introduction/#idempotency
  (`Idempotency-Key` on ticket creation, kept 2 hours: the same key and body answer the original
  response with `x-idempotency-lookup: hit`, a first use `miss`; the same key with another body a
  400 `IdempotentRequestError`);
- incremental export: https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/
  and https://developer.zendesk.com/documentation/ticketing/managing-tickets/using-the-incremental-export-api
  (`GET /api/v2/incremental/tickets/cursor.json` with `start_time` or `cursor`; `tickets`,
  `after_cursor`, `after_url`, `before_cursor`, `before_url`, `end_of_stream`; changes of the last
  minute are left out; a start_time within it is a 400);
- rate limits: https://developer.zendesk.com/api-reference/introduction/rate-limits/ (429 with
  `Retry-After`; `X-Rate-Limit` and `X-Rate-Limit-Remaining` on every answer);
- webhooks: https://developer.zendesk.com/api-reference/webhooks/event-types/ticket-events/ (the
  payload) and https://developer.zendesk.com/documentation/webhooks/verifying/ (the signature,
  `base64(HMACSHA256(TIMESTAMP + BODY))`, computed here on its own, not with the connector's code).

What the connector sends that those pages do not allow lands in `violations` (unknown routes,
query parameters or ticket properties, a body that is not `{"ticket": {...}}`, an Idempotency-Key
where Zendesk takes none, `start_time` and `cursor` together, ...); `assert_no_violations()`.

Usage::

    zendesk = FakeZendesk(email="bot@acme.com", api_token="t", webhook_secret="s",
                          webhook_url="http://127.0.0.1:8787/webhooks/zendesk")
    await zendesk.start()                       # zendesk.url -> http://127.0.0.1:<port>
    ticket = await zendesk.put_ticket("Checkout is down")          # delivers ticket.created
    await zendesk.add_comment(ticket["id"], "Looking", public=False)  # ticket.comment_added
    ...
    zendesk.assert_no_violations()
    await zendesk.stop()
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from sandbox.contracts import ContractViolation, Violation

ACCOUNT_ID = 9_000_001
#: How long Zendesk keeps an Idempotency-Key.
IDEMPOTENCY_TTL = timedelta(hours=2)
#: Properties of a ticket a request may set (the Tickets API's JSON format; read-only ones left out).
TICKET_WRITABLE = {
    "subject": str,
    "raw_subject": str,
    "comment": dict,
    "external_id": str,
    "tags": list,
    "group_id": int,
    "assignee_id": int,
    "requester_id": int,
    "submitter_id": int,
    "organization_id": int,
    "priority": str,
    "status": str,
    "type": str,
    "due_at": str,
    "custom_fields": list,
    "brand_id": int,
    "ticket_form_id": int,
    "collaborator_ids": list,
    "email_cc_ids": list,
    "follower_ids": list,
}
COMMENT_WRITABLE = {"body": str, "html_body": str, "public": bool, "author_id": int, "uploads": list}
QUERY = {
    "/api/v2/users/me.json": set(),
    "/api/v2/tickets.json": {"external_id", "page", "per_page", "sort_by", "sort_order", "page[size]", "page[after]"},
    "ticket": {"include"},
    "comments": {"page[size]", "page[after]", "page[before]", "include", "include_inline_images", "sort_order", "sort"},
    "/api/v2/incremental/tickets/cursor.json": {"start_time", "cursor", "include", "exclude_deleted", "per_page"},
}
PRIORITIES = {None, "low", "normal", "high", "urgent"}
STATUSES = {"new", "open", "pending", "hold", "solved", "closed"}


def zendesk_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`X-Zendesk-Webhook-Signature` of `body` signed at `timestamp`: base64(HMACSHA256(TIMESTAMP + BODY))."""
    return base64.b64encode(hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()).decode()


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    """As received, except the Authorization value (scheme kept, credentials redacted)."""
    json: Any
    authenticated: bool
    status: int = 0
    at: float = field(default_factory=time.monotonic)
    """When it arrived (time.monotonic)."""


@dataclass
class Delivery:
    """One webhook POST the fake made."""

    type: str
    id: str
    status: int | None
    error: str | None = None


@dataclass
class _Failure:
    status: int
    retry_after: float | None
    path_prefix: str | None
    method: str | None
    after_store: bool = False


@dataclass
class _Remembered:
    digest: str
    status: int
    answer: dict[str, Any]
    until: datetime


@dataclass
class _Comment:
    id: int
    author_id: int
    body: str
    public: bool
    created_at: str
    audit_id: int


@dataclass
class _Ticket:
    fields: dict[str, Any]
    comments: list[_Comment] = field(default_factory=list)
    changed: datetime = field(default_factory=lambda: datetime.now(UTC))


class FakeZendesk:
    """Lifecycle: `await start()` before use, `await stop()` after (also waits for webhooks in flight)."""

    def __init__(
        self,
        *,
        email: str,
        api_token: str,
        webhook_secret: str,
        oauth_token: str | None = None,
        webhook_url: str | None = None,
        user_id: int = 361_000_001,
        export_page_size: int = 1000,
        recent_exclusion_s: float = 60,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._credentials = {"Basic " + base64.b64encode(f"{email}/token:{api_token}".encode()).decode()}
        if oauth_token:
            self._credentials.add(f"Bearer {oauth_token}")
        self._webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.user_id = user_id
        """The agent the credential belongs to (threadlink's own user)."""
        self.export_page_size = max(1, export_page_size)
        self.recent_exclusion_s = recent_exclusion_s
        """Changes this recent are not exported yet (Zendesk: one minute); tests may set 0."""
        self._clock = clock or (lambda: datetime.now(UTC))
        self.requests: list[RecordedRequest] = []
        self.violations: list[Violation] = []
        self.deliveries: list[Delivery] = []
        self.created: list[int] = []
        """Ids of the tickets created over REST, in order."""
        self.revoked = False
        """Set to refuse the credential (a revoked token) until cleared."""
        self.rate_limit = 700
        self.tickets: dict[int, _Ticket] = {}
        self._idempotency: dict[str, _Remembered] = {}
        self._ids = itertools.count(1)
        self._object_ids = itertools.count(20_000_000_001)
        self._failures: list[_Failure] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._url = "http://127.0.0.1:0"

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The account's address to configure as `base_url` (valid after `start()`)."""
        return self._url

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/api/v2/users/me.json", self._me)
        app.router.add_get("/api/v2/tickets.json", self._list_tickets)
        app.router.add_post("/api/v2/tickets.json", self._create_ticket)
        app.router.add_get(r"/api/v2/tickets/{id:\d+}.json", self._show_ticket)
        app.router.add_put(r"/api/v2/tickets/{id:\d+}.json", self._update_ticket)
        app.router.add_get(r"/api/v2/tickets/{id:\d+}/comments.json", self._list_comments)
        app.router.add_get("/api/v2/incremental/tickets/cursor.json", self._export)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self._url = f"http://{host}:{self._runner.addresses[0][1]}"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self._url

    async def stop(self) -> None:
        await self.wait_deliveries()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- test controls -------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        path_prefix: str | None = None,
        method: str | None = None,
        after_store: bool = False,
    ) -> None:
        """Answer the next `times` calls (optionally only `method` calls under `path_prefix`) with
        `status` instead of serving them, with `Retry-After` when given. `after_store=True` serves
        the call first and answers `status` all the same (an answer lost after Zendesk did the work)."""
        self._failures.extend(_Failure(status, retry_after, path_prefix, method, after_store) for _ in range(times))

    def assert_no_violations(self) -> None:
        if self.violations:
            raise ContractViolation(self.violations)

    def ticket(self, ticket_id: int) -> dict[str, Any] | None:
        stored = self.tickets.get(ticket_id)
        return self._ticket_json(stored) if stored else None

    def comments(self, ticket_id: int) -> list[dict[str, Any]]:
        return [self._comment_json(c) for c in self.tickets[ticket_id].comments]

    async def put_ticket(
        self,
        subject: str,
        *,
        ticket_id: int | None = None,
        status: str = "open",
        priority: str | None = "normal",
        description: str = "",
        author_id: int = 361_000_999,
        **fields: Any,
    ) -> dict[str, Any]:
        """Create (no `ticket_id`) or update a ticket as an agent in Zendesk would; with a
        `webhook_url`, deliver `ticket.created` or `ticket.status_changed` (else
        `ticket.subject_changed`). Returns its REST JSON."""
        now = self._clock()
        stored = self.tickets.get(ticket_id) if ticket_id else None
        if stored is None:
            ticket_id = ticket_id or next(self._ids)
            stored = self.tickets[ticket_id] = _Ticket(self._new_ticket(ticket_id, subject, author_id, now))
            self._store_comment(stored, author_id, description or subject, public=True, at=now)
            kind = "created"
        else:
            kind = "status_changed" if stored.fields["status"] != status else "subject_changed"
        stored.fields.update(subject=subject, raw_subject=subject, status=status, priority=priority, **fields)
        self._touch(stored, now)
        if self.webhook_url:
            await self.deliver(self.ticket_event(kind, stored.fields["id"]))
        return self._ticket_json(stored)

    async def add_comment(
        self, ticket_id: int, body: str, *, public: bool = True, author_id: int = 361_000_999
    ) -> dict[str, Any]:
        """Someone comments (`public=False`: an internal note); with a `webhook_url`,
        `ticket.comment_added` is delivered. Returns the comment's REST JSON."""
        stored = self.tickets[ticket_id]
        now = self._clock()
        comment = self._store_comment(stored, author_id, body, public=public, at=now)
        self._touch(stored, now)
        if self.webhook_url:
            await self.deliver(self.ticket_event("comment_added", ticket_id, comment=comment))
        return self._comment_json(comment)

    def delete_ticket(self, ticket_id: int) -> None:
        """Soft-delete: the export shows it once more, with status `deleted`."""
        stored = self.tickets[ticket_id]
        stored.fields["status"] = "deleted"
        self._touch(stored, self._clock())

    # -- webhooks ------------------------------------------------------------------------------

    async def wait_deliveries(self) -> None:
        """Until the webhooks of changes made over the API are delivered."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _deliver_later(self, what: str, ticket_id: int, comment: _Comment | None = None) -> None:
        """A change made over the API fires its webhook too, after the answer (as Zendesk does)."""
        if not self.webhook_url or self._session is None:
            return
        task = asyncio.create_task(self.deliver(self.ticket_event(what, ticket_id, comment=comment)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def ticket_event(self, what: str, ticket_id: int, *, comment: _Comment | None = None) -> dict[str, Any]:
        """A ticket-event webhook payload (`zen:event-type:ticket.<what>`) for a stored ticket."""
        ticket = self.tickets[ticket_id].fields
        detail = {
            "actor_id": str(comment.author_id if comment else ticket["submitter_id"]),
            "assignee_id": _str_id(ticket["assignee_id"]),
            "brand_id": str(ticket["brand_id"]),
            "created_at": ticket["created_at"],
            "custom_status": str(ticket["custom_status_id"]),
            "description": ticket["description"],
            "external_id": ticket["external_id"] or "",
            "form_id": str(ticket["ticket_form_id"]),
            "group_id": _str_id(ticket["group_id"]),
            "id": str(ticket["id"]),
            "is_public": ticket["is_public"],
            "organization_id": _str_id(ticket["organization_id"]),
            "priority": (ticket["priority"] or "").upper() or None,
            "requester_id": str(ticket["requester_id"]),
            "status": ticket["status"].upper(),
            "subject": ticket["subject"],
            "submitter_id": str(ticket["submitter_id"]),
            "tags": list(ticket["tags"]),
            "type": (ticket["type"] or "").upper() or None,
            "updated_at": ticket["updated_at"],
            "via": {"channel": ticket["via"]["channel"]},
        }
        event: dict[str, Any] = {"meta": {"sequence": {"id": uuid.uuid4().hex[:16], "position": 1}}}
        if comment is not None:
            event["comment"] = {
                "author": {"id": str(comment.author_id), "is_staff": True, "name": _name(comment.author_id)},
                "body": comment.body,
                "id": str(comment.id),
                "is_public": comment.public,
            }
        return {
            "type": f"zen:event-type:ticket.{what}",
            "account_id": ACCOUNT_ID,
            "id": str(uuid.uuid4()),
            "time": ticket["updated_at"],
            "zendesk_event_version": "2022-11-06",
            "subject": f"zen:ticket:{ticket['id']}",
            "detail": detail,
            "event": event,
        }

    def signed(
        self, payload: dict[str, Any], *, timestamp: str | None = None, secret: str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers Zendesk sends for `payload` (signed now, or at `timestamp`)."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        stamp = timestamp or zendesk_time(self._clock())
        return body, {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Zendesk Webhook",
            "X-Zendesk-Account-Id": str(ACCOUNT_ID),
            "X-Zendesk-Webhook-Id": "01HZENDESKWEBHOOK000000001",
            "X-Zendesk-Webhook-Invocation-Id": str(uuid.uuid4().int)[:19],
            "X-Zendesk-Webhook-Signature-Timestamp": stamp,
            "X-Zendesk-Webhook-Signature": sign(secret or self._webhook_secret, stamp, body),
        }

    async def deliver(self, payload: dict[str, Any], **signing: Any) -> Delivery:
        """POST one webhook to `webhook_url` (a retry is the same payload, signed anew)."""
        if not self.webhook_url or self._session is None:
            raise RuntimeError("FakeZendesk has no webhook_url, or is not started")
        body, headers = self.signed(payload, **signing)
        done = Delivery(payload["type"], payload["id"], None)
        try:
            async with self._session.post(self.webhook_url, data=body, headers=headers) as response:
                done.status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            done.error = repr(exc)
        self.deliveries.append(done)
        return done

    # -- serving -------------------------------------------------------------------------------

    def _violation(self, request: web.Request, where: str, message: str) -> None:
        self.violations.append(Violation(request.method, request.path, where, message))

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body: Any = None
        raw = await request.read() if request.can_read_body else b""
        if request.method in ("POST", "PUT"):
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            if not isinstance(body, dict):
                self._violation(request, "request.body", "not a JSON object")
            if request.content_type != "application/json":
                self._violation(request, "request.headers", f"Content-Type {request.content_type!r}, not JSON")
        elif raw:
            self._violation(request, "request.body", f"a {request.method} with a body")
        authorization = request.headers.get("Authorization", "")
        authenticated = not self.revoked and authorization in self._credentials
        headers = dict(request.headers)
        if "Authorization" in headers:
            headers["Authorization"] = authorization.partition(" ")[0] + " <redacted>"
        recorded = RecordedRequest(request.method, request.path, dict(request.query), headers, body, authenticated)
        self.requests.append(recorded)
        self._check_request(request)
        response = await self._answer(request, handler, authenticated)
        response.headers["X-Rate-Limit"] = str(self.rate_limit)
        response.headers["X-Rate-Limit-Remaining"] = str(self.rate_limit - 1)
        recorded.status = response.status
        return response

    async def _answer(self, request: web.Request, handler: Any, authenticated: bool) -> web.StreamResponse:
        for failure in self._failures:
            if failure.path_prefix is not None and not request.path.startswith(failure.path_prefix):
                continue
            if failure.method is not None and failure.method.upper() != request.method:
                continue
            self._failures.remove(failure)
            if failure.after_store and authenticated:
                await handler(request)
            headers = {"Retry-After": f"{failure.retry_after:g}"} if failure.retry_after is not None else {}
            if failure.status == 429:
                return web.Response(status=429, text="Rate limit exceeded", headers=headers)
            return _error(failure.status, "InjectedFailure", "injected by the test", headers)
        if not authenticated:
            return web.json_response({"error": "Couldn't authenticate you"}, status=401)
        try:
            return await handler(request)
        except web.HTTPNotFound:
            self._violation(request, "request.path", "no such endpoint in the Support API")
            return _error(404, "InvalidEndpoint", "Not found")
        except web.HTTPMethodNotAllowed:
            self._violation(request, "request.method", "method not allowed on this endpoint")
            return _error(404, "InvalidEndpoint", "Not found")

    def _check_request(self, request: web.Request) -> None:
        path = request.path
        route = "ticket" if path.count("/") == 4 and path.startswith("/api/v2/tickets/") else path
        route = "comments" if path.endswith("/comments.json") else route
        allowed = QUERY.get(route)
        if allowed is not None:
            unknown = sorted(set(request.query) - allowed)
            if unknown:
                self._violation(request, "request.query", f"parameters the endpoint does not take: {unknown}")
        if "Authorization" not in request.headers:
            self._violation(request, "request.headers", "no Authorization header")
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (request.method == "POST" and path == "/api/v2/tickets.json"):
            self._violation(request, "request.headers", "Idempotency-Key is taken only by ticket creation")
        if key is not None and not 0 < len(key) <= 255:
            self._violation(request, "request.headers", "Idempotency-Key must be 1..255 characters")

    def _check_ticket(self, request: web.Request, body: Any, *, creating: bool) -> dict[str, Any] | None:
        ticket = body.get("ticket") if isinstance(body, dict) else None
        if not isinstance(ticket, dict) or set(body) != {"ticket"}:
            self._violation(request, "request.body", 'not {"ticket": {...}}')
            return None
        for name, value in ticket.items():
            kind = TICKET_WRITABLE.get(name)
            if kind is None:
                self._violation(request, "request.body", f"ticket.{name} is not a writable ticket property")
            elif not isinstance(value, kind) or isinstance(value, bool):
                self._violation(request, "request.body", f"ticket.{name} is not a {kind.__name__}")
        if ticket.get("priority") not in PRIORITIES or ticket.get("status", "open") not in STATUSES:
            self._violation(request, "request.body", "ticket.priority or ticket.status is not one Zendesk knows")
        tags = ticket.get("tags")
        if isinstance(tags, list) and not all(isinstance(t, str) and t and " " not in t for t in tags):
            self._violation(request, "request.body", "ticket.tags must be strings without spaces")
        comment = ticket.get("comment")
        if creating and not isinstance(comment, dict):
            self._violation(request, "request.body", "ticket.comment is required to create a ticket")
        if isinstance(comment, dict):
            for name, value in comment.items():
                kind = COMMENT_WRITABLE.get(name)
                if kind is None or not isinstance(value, kind):
                    self._violation(request, "request.body", f"ticket.comment.{name} is not a comment property")
            if not isinstance(comment.get("body") or comment.get("html_body"), str):
                self._violation(request, "request.body", "ticket.comment has no body")
        return ticket

    async def _me(self, request: web.Request) -> web.Response:
        return web.json_response({"user": self._user(self.user_id)})

    async def _show_ticket(self, request: web.Request) -> web.Response:
        stored = self.tickets.get(int(request.match_info["id"]))
        if stored is None or stored.fields["status"] == "deleted":
            return _error(404, "RecordNotFound", "Not found")
        return web.json_response({"ticket": self._ticket_json(stored)})

    async def _list_tickets(self, request: web.Request) -> web.Response:
        external_id = request.query.get("external_id")
        found = [
            self._ticket_json(t)
            for t in self.tickets.values()
            if t.fields["status"] != "deleted" and (external_id is None or t.fields["external_id"] == external_id)
        ]
        return web.json_response({"tickets": found, "next_page": None, "previous_page": None, "count": len(found)})

    async def _create_ticket(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read() or b"null")
        key = request.headers.get("Idempotency-Key")
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        now = self._clock()
        if key is not None:
            self._idempotency = {k: v for k, v in self._idempotency.items() if v.until > now}
            earlier = self._idempotency.get(key)
            if earlier is not None and earlier.digest != digest:
                description = "Request parameters don't match the given idempotency key"
                return _error(400, "IdempotentRequestError", description, {"x-idempotency-lookup": "hit"})
            if earlier is not None:
                return web.json_response(earlier.answer, status=earlier.status, headers={"x-idempotency-lookup": "hit"})
        ticket = self._check_ticket(request, body, creating=True)
        if ticket is None or not isinstance(ticket.get("comment"), dict):
            return _error(422, "RecordInvalid", "Record validation errors")
        comment = ticket["comment"]
        ticket_id = next(self._ids)
        stored = self.tickets[ticket_id] = _Ticket(
            self._new_ticket(ticket_id, str(ticket.get("subject") or ""), self.user_id, now)
        )
        fields = {k: v for k, v in ticket.items() if k in TICKET_WRITABLE and k != "comment"}
        stored.fields.update(fields, raw_subject=stored.fields["subject"], via={"channel": "api", "source": {}})
        stored.fields["status"] = fields.get("status", "new" if not ticket.get("assignee_id") else "open")
        made = self._store_comment(
            stored,
            self.user_id,
            str(comment.get("body") or ""),
            public=comment.get("public", True) is not False,
            at=now,
        )
        stored.fields["description"] = made.body
        self._touch(stored, now)
        self.created.append(ticket_id)
        answer = {"ticket": self._ticket_json(stored), "audit": self._audit(stored, made)}
        if key is not None:
            self._idempotency[key] = _Remembered(digest, 201, answer, now + IDEMPOTENCY_TTL)
        self._deliver_later("created", ticket_id)
        headers = {"Location": f"{self._url}/api/v2/tickets/{ticket_id}.json"}
        if key is not None:
            headers["x-idempotency-lookup"] = "miss"
        return web.json_response(answer, status=201, headers=headers)

    async def _update_ticket(self, request: web.Request) -> web.Response:
        stored = self.tickets.get(int(request.match_info["id"]))
        if stored is None or stored.fields["status"] == "deleted":
            return _error(404, "RecordNotFound", "Not found")
        ticket = self._check_ticket(request, json.loads(await request.read() or b"null"), creating=False)
        if ticket is None:
            return _error(422, "RecordInvalid", "Record validation errors")
        now = self._clock()
        comment = ticket.get("comment")
        made = None
        if isinstance(comment, dict) and isinstance(comment.get("body"), str) and comment["body"].strip():
            made = self._store_comment(
                stored, self.user_id, comment["body"], public=comment.get("public", True) is not False, at=now
            )
        stored.fields.update({k: v for k, v in ticket.items() if k in TICKET_WRITABLE and k != "comment"})
        self._touch(stored, now)
        if made is not None:
            self._deliver_later("comment_added", stored.fields["id"], made)
        return web.json_response({"ticket": self._ticket_json(stored), "audit": self._audit(stored, made)})

    async def _list_comments(self, request: web.Request) -> web.Response:
        stored = self.tickets.get(int(request.match_info["id"]))
        if stored is None:
            return _error(404, "RecordNotFound", "Not found")
        size = _int(request.query.get("page[size]"), 100)
        if not 1 <= size <= 100:
            self._violation(request, "request.query", "page[size] must be 1..100")
            size = max(1, min(size, 100))
        start = _int(_unb64(request.query.get("page[after]")), 0)
        chunk = stored.comments[start : start + size]
        end = start + len(chunk)
        has_more = end < len(stored.comments)
        after = _b64(str(end)) if chunk else None
        base = f"{self._url}{request.path}"
        return web.json_response(
            {
                "comments": [self._comment_json(c) for c in chunk],
                "meta": {"has_more": has_more, "after_cursor": after, "before_cursor": _b64(str(start))},
                "links": {
                    "prev": f"{base}?{urlencode({'page[size]': size, 'page[before]': _b64(str(start))})}",
                    "next": f"{base}?{urlencode({'page[size]': size, 'page[after]': after})}" if has_more else None,
                },
            }
        )

    async def _export(self, request: web.Request) -> web.Response:
        query = request.query
        now = self._clock()
        horizon = now - timedelta(seconds=self.recent_exclusion_s)
        if ("start_time" in query) == ("cursor" in query):
            self._violation(request, "request.query", "give exactly one of start_time and cursor")
            return _error(400, "InvalidValue", "start_time or cursor is required")
        if "start_time" in query:
            raw = query["start_time"]
            if not raw.isdigit():
                self._violation(request, "request.query", f"start_time {raw[:20]!r} is not epoch seconds")
                return _error(400, "InvalidValue", "start_time must be an integer")
            if int(raw) > horizon.timestamp():
                self._violation(request, "request.query", "start_time within the last minute")
                return _error(400, "InvalidValue", "Too recent start_time. Use a start_time older than 1 minute")
            position: tuple[float, int] = (float(raw) - 0.5, 0)
        else:
            decoded = _unb64(query["cursor"]) or ""
            stamp, _, last_id = decoded.partition("|")
            try:
                position = (float(stamp), int(last_id))
            except ValueError:
                self._violation(request, "request.query", "cursor is not one this export gave")
                return _error(400, "InvalidValue", "invalid cursor")
        ready = sorted(
            (t for t in self.tickets.values() if t.changed <= horizon),
            key=lambda t: (t.changed.timestamp(), t.fields["id"]),
        )
        after = [t for t in ready if (t.changed.timestamp(), t.fields["id"]) > position]
        page = after[: self.export_page_size]
        if page:
            position = (page[-1].changed.timestamp(), page[-1].fields["id"])
        cursor = _b64(f"{position[0]!r}|{position[1]}")
        before = _b64(f"{page[0].changed.timestamp()!r}|{page[0].fields['id']}") if page else None
        export = f"{self._url}/api/v2/incremental/tickets/cursor.json"
        return web.json_response(
            {
                "tickets": [self._ticket_json(t) for t in page],
                "after_url": f"{export}?{urlencode({'cursor': cursor})}",
                "after_cursor": cursor,
                "before_url": f"{export}?{urlencode({'cursor': before})}" if before else None,
                "before_cursor": before,
                "end_of_stream": len(after) <= self.export_page_size,
            }
        )

    # -- shapes --------------------------------------------------------------------------------

    def _touch(self, stored: _Ticket, now: datetime) -> None:
        # Each change a moment after the last one: the export orders by change, as Zendesk does.
        stored.changed = max(
            now, max((t.changed for t in self.tickets.values()), default=now) + timedelta(microseconds=1)
        )
        stored.fields["updated_at"] = zendesk_time(stored.changed)
        stored.fields["generated_timestamp"] = int(stored.changed.timestamp())
        stored.fields["is_public"] = any(c.public for c in stored.comments)

    def _store_comment(self, stored: _Ticket, author_id: int, body: str, *, public: bool, at: datetime) -> _Comment:
        comment = _Comment(next(self._object_ids), author_id, body, public, zendesk_time(at), next(self._object_ids))
        stored.comments.append(comment)
        return comment

    def _new_ticket(self, ticket_id: int, subject: str, author_id: int, now: datetime) -> dict[str, Any]:
        stamp = zendesk_time(now)
        return {
            "id": ticket_id,
            "url": f"{self._url}/api/v2/tickets/{ticket_id}.json",
            "external_id": None,
            "type": None,
            "subject": subject,
            "raw_subject": subject,
            "description": "",
            "priority": None,
            "status": "new",
            "recipient": None,
            "requester_id": author_id,
            "submitter_id": author_id,
            "assignee_id": None,
            "organization_id": None,
            "group_id": None,
            "collaborator_ids": [],
            "follower_ids": [],
            "email_cc_ids": [],
            "forum_topic_id": None,
            "problem_id": None,
            "has_incidents": False,
            "is_public": True,
            "due_at": None,
            "tags": [],
            "custom_fields": [],
            "satisfaction_rating": None,
            "sharing_agreement_ids": [],
            "custom_status_id": 1,
            "fields": [],
            "followup_ids": [],
            "ticket_form_id": 1,
            "brand_id": 1,
            "allow_channelback": False,
            "allow_attachments": True,
            "from_messaging_channel": False,
            "generated_timestamp": int(now.timestamp()),
            "via": {"channel": "web", "source": {"from": {}, "to": {}, "rel": None}},
            "created_at": stamp,
            "updated_at": stamp,
        }

    @staticmethod
    def _ticket_json(stored: _Ticket) -> dict[str, Any]:
        return json.loads(json.dumps(stored.fields))  # a copy: a test may change it, not the store

    @staticmethod
    def _comment_json(comment: _Comment) -> dict[str, Any]:
        return {
            "id": comment.id,
            "type": "Comment",
            "author_id": comment.author_id,
            "body": comment.body,
            "html_body": f'<div class="zd-comment"><p>{comment.body}</p></div>',
            "plain_body": comment.body,
            "public": comment.public,
            "attachments": [],
            "audit_id": comment.audit_id,
            "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}},
            "metadata": {"system": {}, "custom": {}},
            "created_at": comment.created_at,
        }

    def _audit(self, stored: _Ticket, comment: _Comment | None) -> dict[str, Any]:
        events: list[dict[str, Any]] = []
        if comment is not None:
            events.append({**self._comment_json(comment), "type": "Comment"})
        return {
            "id": comment.audit_id if comment else next(self._object_ids),
            "ticket_id": stored.fields["id"],
            "created_at": stored.fields["updated_at"],
            "author_id": self.user_id,
            "metadata": {"system": {}, "custom": {}},
            "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}},
            "events": events,
        }

    def _user(self, user_id: int) -> dict[str, Any]:
        return {
            "id": user_id,
            "url": f"{self._url}/api/v2/users/{user_id}.json",
            "name": _name(user_id),
            "email": "threadlink@example.com",
            "role": "agent",
            "active": True,
            "verified": True,
            "time_zone": "UTC",
            "locale": "en-US",
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
        }


def _error(status: int, error: str, description: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": error, "description": description}, status=status, headers=headers)


def _name(user_id: int) -> str:
    return "threadlink" if user_id == 361_000_001 else f"Agent {user_id % 1000}"


def _str_id(value: Any) -> str | None:
    return str(value) if value is not None else None


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def _unb64(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return base64.urlsafe_b64decode(text.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None
