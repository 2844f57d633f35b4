"""A local stand-in for Jira Cloud, for demos and tests. SANDBOX ONLY: nothing points at it
unless a config or a test says so.

It serves the REST v3 calls threadlink makes (get issue, create issue, search by label, add
and list comments, comments by id, comment properties, remote issue links upserted by
`globalId`, myself) with Basic auth checked like
Jira Cloud, answers in the shapes of the published spec, and sends webhooks the way Jira Cloud
admin webhooks do (payload shape, `X-Hub-Signature`, `X-Atlassian-Webhook-Identifier`). Every
request is recorded (`requests`) and checked against Jira's OpenAPI document, and so is every
answer; differences land in `violations` (see sandbox/contracts/jira.py).

Comments keep the entity properties they were created with (`properties: [{key, value}]`) and
show them when asked with `expand=properties`, as Jira does; `comment_list_expands_properties =
False` makes the issue's comment listing ignore that expand (the spec documents it only for
`POST /rest/api/3/comment/list`). Failures are injected with `fail_next`, including the
ambiguous kind: `after_store=True` does the work and then answers the error, `delay_s` holds
the answer back (longer than the client's timeout: the client times out).

Usage::

    jira = FakeJira(email="bot@example.com", api_token="t", webhook_secret="s",
                    webhook_url="http://127.0.0.1:8080/webhooks/jira")
    await jira.start()                       # jira.url -> http://127.0.0.1:<port>
    await jira.put_issue("OPS-1", "Checkout is down", status="In Progress")
    ...
    jira.assert_no_violations()
    await jira.stop()

Sandbox-only routes (no auth): `POST /sandbox/issues` with `{key, summary, status?, assignee?,
priority?, project?}`, `GET /sandbox/issues/{key}/comments`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.contracts.jira import ContractViolation, JiraContract, Violation, adf_problems, jira_contract

log = logging.getLogger(__name__)

NOT_FOUND_MESSAGE = "Issue does not exist or you do not have permission to see it."
NOT_AUTHENTICATED_MESSAGE = "You are not authenticated. Authentication required to perform this operation."

_STATUS_CATEGORIES = {
    "To Do": (2, "new", "blue-gray", "To Do"),
    "In Progress": (4, "indeterminate", "yellow", "In Progress"),
    "Done": (3, "done", "green", "Done"),
}
_PRIORITY_IDS = {"Highest": "1", "High": "2", "Medium": "3", "Low": "4", "Lowest": "5"}


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    """As received, except the Authorization value (scheme kept, credentials redacted)."""
    json: Any
    body: bytes = field(repr=False)
    authenticated: bool = False


@dataclass
class Delivery:
    """One webhook POST attempt the fake made."""

    event: str
    identifier: str
    attempt: int
    status: int | None
    error: str | None = None


@dataclass
class _Failure:
    status: int
    retry_after: float | None
    path_prefix: str | None
    after_store: bool = False
    delay_s: float = 0.0


def jira_time(moment: datetime) -> str:
    """Jira's timestamp form: `2024-01-17T12:34:00.000+0000`."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


class FakeJira:
    """Lifecycle: `await start()` before use, `await stop()` after (also waits for webhooks in flight)."""

    def __init__(
        self,
        *,
        email: str,
        api_token: str,
        webhook_secret: str,
        webhook_url: str | None = None,
        strict: bool = False,
        display_name: str = "threadlink bot",
        webhook_attempts: int = 3,
        clock: Callable[[], datetime] | None = None,
        contract: JiraContract | None = None,
        check_contracts: bool = True,
        comments_page_limit: int = 100,
        comment_list_expands_properties: bool = True,
    ) -> None:
        self.email = email
        self._api_token = api_token
        self._webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.strict = strict
        self.webhook_attempts = max(1, webhook_attempts)
        self._clock = clock or (lambda: datetime.now(UTC))
        # check_contracts=False runs the fake without the spec (a demo on a machine without specs).
        self._contract = (contract or jira_contract()) if check_contracts else None
        self.comments_page_limit = max(1, comments_page_limit)
        """The most comments one page of `GET .../comment` holds, whatever maxResults asks."""
        self.comment_list_expands_properties = comment_list_expands_properties
        self.requests: list[RecordedRequest] = []
        self.violations: list[Violation] = []
        self.deliveries: list[Delivery] = []
        self._issues: dict[str, dict[str, Any]] = {}
        self._comments: dict[str, list[dict[str, Any]]] = {}
        self._comment_properties: dict[str, dict[str, Any]] = {}
        self._issue_properties: dict[str, dict[str, Any]] = {}
        self._remote_links: dict[str, list[dict[str, Any]]] = {}
        self._link_ids = itertools.count(10000)
        self._project_ids: dict[str, str] = {}
        self._ids = itertools.count(10000)
        self._comment_ids = itertools.count(10000)
        self._failures: list[_Failure] = []
        self.created: list[str] = []
        """Keys of the issues created over REST (createIssue), in order."""
        self.closed_projects: set[str] = set()
        """Projects createIssue refuses (400), as Jira does for one the account may not create in."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._url = "http://127.0.0.1:0"
        self.me = self._user(display_name, email=email)

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to configure as `base_url` (valid after `start()`)."""
        return self._url

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/rest/api/3/issue/{issueIdOrKey}", self._get_issue)
        app.router.add_post("/rest/api/3/issue/{issueIdOrKey}/comment", self._add_comment)
        app.router.add_get("/rest/api/3/issue/{issueIdOrKey}/comment", self._get_comments)
        app.router.add_post("/rest/api/3/comment/list", self._comments_by_ids)
        app.router.add_get("/rest/api/3/comment/{commentId}/properties", self._comment_property_keys)
        app.router.add_get("/rest/api/3/comment/{commentId}/properties/{propertyKey}", self._comment_property)
        app.router.add_post("/rest/api/3/issue/{issueIdOrKey}/remotelink", self._put_remote_link)
        app.router.add_get("/rest/api/3/issue/{issueIdOrKey}/remotelink", self._get_remote_link)
        app.router.add_get("/rest/api/3/issue/{issueIdOrKey}/properties/{propertyKey}", self._issue_property)
        app.router.add_get("/rest/api/3/myself", self._myself)
        app.router.add_post("/rest/api/3/issue", self._create_issue)
        app.router.add_post("/rest/api/3/search", self._search)
        app.router.add_post("/sandbox/issues", self._sandbox_put_issue)
        app.router.add_get("/sandbox/issues/{key}/comments", self._sandbox_comments)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._stopping.clear()
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0]
        self._url = f"http://{host}:{bound[1]}"
        self.me = self._user(self.me["displayName"], email=self.email)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self._url

    async def stop(self) -> None:
        self._stopping.set()  # answers held back by fail_next(delay_s=...) go out now
        await self.wait_deliveries()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeJira:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- test controls -------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        path_prefix: str | None = None,
        after_store: bool = False,
        delay_s: float = 0.0,
    ) -> None:
        """Answer the next `times` REST calls (optionally only those under `path_prefix`) with
        `status` (and `Retry-After` when given) instead of serving them.

        `after_store=True` serves the call first (a comment is stored, its webhook sent) and
        answers `status` all the same: Jira failing after the work was done. `delay_s` holds the
        answer back that long (until `stop()` at most); longer than the client's timeout, the
        client times out, and with `after_store` that is "stored, but the answer never came"."""
        self._failures.extend(_Failure(status, retry_after, path_prefix, after_store, delay_s) for _ in range(times))

    def assert_no_violations(self) -> None:
        if self.violations:
            raise ContractViolation(self.violations)

    def comments(self, key: str) -> list[dict[str, Any]]:
        """The comments stored on an issue (as Jira's Comment objects, without properties)."""
        issue = self.issue(key)
        return list(self._comments.get(issue["key"], [])) if issue else []

    def remote_links(self, key: str) -> list[dict[str, Any]]:
        """The remote issue links stored on an issue (as Jira's RemoteIssueLink objects)."""
        issue = self.issue(key)
        return [dict(link) for link in self._remote_links.get(issue["key"], [])] if issue else []

    def comment_properties(self, comment_id: str) -> dict[str, Any]:
        """The entity properties of a comment, key -> value (empty for an unknown comment)."""
        return dict(self._comment_properties.get(comment_id, {}))

    def issue(self, key: str) -> dict[str, Any] | None:
        """The stored IssueBean for a key or id (case-insensitive, like Jira), or None."""
        found = self._issues.get(key.upper())
        if found is None:
            found = next((i for i in self._issues.values() if i["id"] == key), None)
        return found

    async def put_issue(
        self,
        key: str,
        summary: str,
        status: str = "To Do",
        assignee: str | None = None,
        priority: str = "Medium",
        project: str | None = None,
        labels: list[str] | None = None,
    ) -> dict[str, Any]:
        """Create or update an issue; with a `webhook_url`, deliver `jira:issue_created` or
        `jira:issue_updated` (awaited, retried like Jira on failure). Returns the IssueBean.
        `labels` None keeps an existing issue's labels."""
        key = key.upper()
        project_key = (project or key.rpartition("-")[0] or key).upper()
        now = jira_time(self._clock())
        previous = self._issues.get(key)
        issue_id = previous["id"] if previous else str(next(self._ids))
        fields = {
            "summary": summary,
            "status": self._status(status),
            "assignee": self._user(assignee) if assignee else None,
            "priority": self._priority(priority),
            "project": self._project(project_key),
            "issuetype": {
                "self": f"{self._url}/rest/api/3/issuetype/10001",
                "id": "10001",
                "name": "Task",
                "description": "A small, distinct piece of work.",
                "subtask": False,
            },
            "created": previous["fields"]["created"] if previous else now,
            "updated": now,
            "labels": list(labels)
            if labels is not None
            else list((previous or {}).get("fields", {}).get("labels", [])),
        }
        issue = {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": issue_id,
            "self": f"{self._url}/rest/api/3/issue/{issue_id}",
            "key": key,
            "fields": fields,
        }
        self._issues[key] = issue
        if self.webhook_url:
            if previous is None:
                payload = self.issue_event("jira:issue_created", key)
            else:
                payload = self.issue_event("jira:issue_updated", key, changelog=_changelog(previous, issue))
            await self.deliver(payload)
        return issue

    async def delete_issue(self, key: str) -> None:
        """Delete an issue; with a `webhook_url`, deliver `jira:issue_deleted`."""
        issue = self.issue(key)
        if issue is None:
            return
        payload = self.issue_event("jira:issue_deleted", issue["key"])
        del self._issues[issue["key"]]
        self._remote_links.pop(issue["key"], None)
        for comment in self._comments.pop(issue["key"], []):
            self._comment_properties.pop(comment["id"], None)
        if self.webhook_url:
            await self.deliver(payload)

    # -- webhooks ------------------------------------------------------------------------

    def issue_event(self, event: str, key: str, *, changelog: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """A Jira Cloud issue webhook payload (`jira:issue_created|updated|deleted`) for a stored issue."""
        issue = self.issue(key)
        if issue is None:
            raise KeyError(key)
        type_name = {"jira:issue_created": "issue_created", "jira:issue_deleted": "issue_deleted"}.get(event)
        if type_name is None:
            changed = {item["field"] for item in changelog or []}
            type_name = (
                "issue_generic"
                if "status" in changed
                else "issue_assigned"
                if changed == {"assignee"}
                else "issue_updated"
            )
        payload: dict[str, Any] = {
            "timestamp": int(self._clock().timestamp() * 1000),
            "webhookEvent": event,
            "issue_event_type_name": type_name,
            "user": self.me,
            "issue": {k: issue[k] for k in ("id", "self", "key", "fields")},
        }
        if changelog:
            payload["changelog"] = {"id": str(next(self._ids)), "items": changelog}
        return payload

    def comment_event(self, key: str, comment: dict[str, Any]) -> dict[str, Any]:
        """A `comment_created` payload. Jira Cloud webhooks carry the body as a wiki-markup
        string, not ADF, and only a few of the issue's fields."""
        issue = self.issue(key)
        if issue is None:
            raise KeyError(key)
        fields = issue["fields"]
        return {
            "timestamp": int(self._clock().timestamp() * 1000),
            "webhookEvent": "comment_created",
            "comment": {**comment, "body": _adf_to_wiki(comment.get("body"))},
            "issue": {
                "id": issue["id"],
                "self": issue["self"],
                "key": issue["key"],
                "fields": {k: fields[k] for k in ("summary", "issuetype", "project", "assignee", "priority", "status")},
            },
        }

    def signed(self, payload: dict[str, Any], *, identifier: str | None = None) -> tuple[bytes, dict[str, str]]:
        """The body and headers Jira Cloud would send for `payload`: HMAC-SHA256 of the body
        with the webhook secret in `X-Hub-Signature` (computed here independently of the
        connector), and a delivery identifier."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        digest = hmac.new(self._webhook_secret.encode(), body, hashlib.sha256).hexdigest()
        return body, {
            "Content-Type": "application/json; charset=UTF-8",
            "User-Agent": "Atlassian Webhook HTTP Client",
            "X-Atlassian-Webhook-Identifier": identifier or str(uuid.uuid4()),
            "X-Atlassian-Webhook-Flow": "Primary",
            "X-Hub-Signature": f"sha256={digest}",
        }

    async def deliver(self, payload: dict[str, Any]) -> Delivery:
        """POST one webhook to `webhook_url`; on a non-2xx answer or a connection error, try
        again (same identifier, `X-Atlassian-Webhook-Retry: n`) up to `webhook_attempts` times."""
        if not self.webhook_url or self._session is None:
            raise RuntimeError("FakeJira has no webhook_url, or is not started")
        body, headers = self.signed(payload)
        delivery = Delivery(payload["webhookEvent"], headers["X-Atlassian-Webhook-Identifier"], 0, None)
        for attempt in range(1, self.webhook_attempts + 1):
            if attempt > 1:
                headers["X-Atlassian-Webhook-Retry"] = str(attempt - 1)
                await asyncio.sleep(0.05 * 2 ** (attempt - 2))
            delivery = Delivery(delivery.event, delivery.identifier, attempt, None)
            try:
                async with self._session.post(self.webhook_url, data=body, headers=headers) as response:
                    delivery.status = response.status
            except aiohttp.ClientError as exc:
                delivery.error = type(exc).__name__
            self.deliveries.append(delivery)
            if delivery.status is not None and 200 <= delivery.status < 300:
                break
            log.info(
                "fake jira: webhook %s attempt %d failed (%s)",
                delivery.event,
                attempt,
                delivery.status or delivery.error,
            )
        return delivery

    async def wait_deliveries(self) -> None:
        """Wait for webhooks sent in the background (comment_created after a REST comment)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- HTTP ----------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read()
        parsed = _json_or_none(raw)
        authenticated = self._authenticated(request)
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=list(request.query.items()),
            headers={k: (_redact(v) if k.lower() == "authorization" else v) for k, v in request.headers.items()},
            json=parsed,
            body=raw,
            authenticated=authenticated,
        )
        self.requests.append(recorded)
        if not request.path.startswith("/rest/"):
            return await handler(request)

        if self._contract is None:
            return await handler(request)
        found = self._contract.check_request(
            request.method,
            request.path,
            query=recorded.query,
            body=parsed,
            has_body=bool(raw),
            content_type=request.headers.get("Content-Type") if raw else None,
        )
        self.violations.extend(found)
        if found and self.strict:
            return _errors(400, [str(v) for v in found])
        failure = self._take_failure(request.path)
        if failure is not None and not failure.after_store:
            return await self._injected(failure)
        if not authenticated:
            # Jira Cloud treats a request without credentials as anonymous (a private site then
            # answers 404 for issues); the fake refuses it outright so a missing header is loud.
            return _errors(401, [NOT_AUTHENTICATED_MESSAGE], headers={"WWW-Authenticate": 'Basic realm="Jira"'})
        response = await handler(request)
        self._check_answer(request, response)
        if failure is not None:
            return await self._injected(failure)  # the work is done; the caller hears otherwise
        return response

    async def _injected(self, failure: _Failure) -> web.Response:
        if failure.delay_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), failure.delay_s)
        headers = {"Retry-After": f"{failure.retry_after:g}"} if failure.retry_after is not None else None
        return web.json_response(
            {"errorMessages": ["Injected by FakeJira.fail_next."], "errors": {}},
            status=failure.status,
            headers=headers,
        )

    def _check_answer(self, request: web.Request, response: web.StreamResponse) -> None:
        body: Any = None
        if (
            isinstance(response, web.Response)
            and response.body is not None
            and response.content_type == "application/json"
        ):
            body = json.loads(response.body)  # type: ignore[arg-type]
        found = (
            self._contract.check_response(request.method, request.path, response.status, body) if self._contract else []
        )
        self.violations.extend(found)
        if found and self.strict:
            raise ContractViolation(found)

    def _authenticated(self, request: web.Request) -> bool:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        expected = f"{self.email}:{self._api_token}".encode()
        return hmac.compare_digest(decoded, expected)

    def _take_failure(self, path: str) -> _Failure | None:
        for index, failure in enumerate(self._failures):
            if failure.path_prefix is None or path.startswith(failure.path_prefix):
                return self._failures.pop(index)
        return None

    async def _get_issue(self, request: web.Request) -> web.Response:
        issue = self.issue(request.match_info["issueIdOrKey"])
        if issue is None:
            return _errors(404, [NOT_FOUND_MESSAGE])
        wanted = _requested_fields(request.query.getall("fields", []))
        fields = issue["fields"] if wanted is None else {k: v for k, v in issue["fields"].items() if k in wanted}
        return web.json_response({**issue, "fields": fields})

    async def _add_comment(self, request: web.Request) -> web.Response:
        issue = self.issue(request.match_info["issueIdOrKey"])
        if issue is None:
            return _errors(404, [NOT_FOUND_MESSAGE])
        payload = _json_or_none(await request.read())
        if not isinstance(payload, dict) or adf_problems(payload.get("body")):
            # Jira Cloud refuses a v3 comment whose body is missing or not ADF.
            return web.json_response(
                {"errorMessages": [], "errors": {"comment": "Comment body is not valid!"}}, status=400
            )
        properties = _entity_properties(payload.get("properties", []))
        if properties is None:
            return _errors(400, ["Properties must be a list of objects with a key (1-255 characters) and a value."])
        now = jira_time(self._clock())
        comment_id = str(next(self._comment_ids))
        comment: dict[str, Any] = {
            "self": f"{self._url}/rest/api/3/issue/{issue['id']}/comment/{comment_id}",
            "id": comment_id,
            "author": self.me,
            "body": payload["body"],
            "updateAuthor": self.me,
            "created": now,
            "updated": now,
            "jsdPublic": True,
        }
        if isinstance(payload.get("visibility"), dict):
            comment["visibility"] = payload["visibility"]
        self._comments.setdefault(issue["key"], []).append(comment)
        issue["fields"]["updated"] = now  # as Jira does: a comment is a change of the issue
        if properties:
            self._comment_properties[comment_id] = properties
        if self.webhook_url and self._session is not None:
            # Jira sends webhooks after answering, not during the request.
            task = asyncio.create_task(self.deliver(self.comment_event(issue["key"], comment)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response(self._rendered(comment, _expands(request)), status=201)

    async def _get_comments(self, request: web.Request) -> web.Response:
        """getComments: a PageOfComments, oldest first unless `orderBy=-created`."""
        issue = self.issue(request.match_info["issueIdOrKey"])
        if issue is None:
            return _errors(404, [NOT_FOUND_MESSAGE])
        order = request.query.get("orderBy", "created")
        if order not in ("created", "+created", "-created"):
            return _errors(400, [f"orderBy {order!r} is not supported; use created or -created."])
        start_at = max(0, _int(request.query.get("startAt"), 0))
        max_results = min(max(0, _int(request.query.get("maxResults"), 50)), self.comments_page_limit)
        # Ordered by creation time; comments created in the same millisecond by id, as stored.
        comments = sorted(self._comments.get(issue["key"], []), key=lambda c: c["created"])
        if order == "-created":
            comments.reverse()
        expand = _expands(request)
        if not self.comment_list_expands_properties:
            expand.discard("properties")
        page = comments[start_at : start_at + max_results]
        return web.json_response(
            {
                "startAt": start_at,
                "maxResults": max_results,
                "total": len(comments),
                "comments": [self._rendered(c, expand) for c in page],
            }
        )

    async def _comments_by_ids(self, request: web.Request) -> web.Response:
        """getCommentsByIds: a PageBeanComment of the comments (of any issue) with these ids."""
        payload = _json_or_none(await request.read())
        ids = payload.get("ids") if isinstance(payload, dict) else None
        if not isinstance(ids, list) or not ids or len(ids) > 1000:
            return _errors(400, ["Send between 1 and 1000 comment ids."])
        wanted = {str(i) for i in ids}
        expand = _expands(request)
        found = sorted((c for c in self._all_comments() if c["id"] in wanted), key=lambda c: int(c["id"]))
        return web.json_response(
            {
                "maxResults": 1000,
                "startAt": 0,
                "total": len(found),
                "isLast": True,
                "values": [self._rendered(c, expand) for c in found],
            }
        )

    async def _comment_property_keys(self, request: web.Request) -> web.Response:
        comment = self._comment_by_id(request.match_info["commentId"])
        if comment is None:
            return _errors(404, ["The comment was not found."])
        keys = self._comment_properties.get(comment["id"], {})
        return web.json_response({"keys": [{"self": f"{comment['self']}/properties/{k}", "key": k} for k in keys]})

    async def _comment_property(self, request: web.Request) -> web.Response:
        comment = self._comment_by_id(request.match_info["commentId"])
        key = request.match_info["propertyKey"]
        properties = self._comment_properties.get(comment["id"], {}) if comment else {}
        if key not in properties:
            return _errors(404, [f"The property with key '{key}' was not found."])
        return web.json_response({"key": key, "value": properties[key]})

    async def _issue_property(self, request: web.Request) -> web.Response:
        issue = self.issue(request.match_info["issueIdOrKey"])
        if issue is None:
            return _errors(404, [NOT_FOUND_MESSAGE])
        key = request.match_info["propertyKey"]
        properties = self._issue_properties.get(issue["id"], {})
        if key not in properties:
            return _errors(404, [f"The property with key '{key}' was not found."])
        return web.json_response({"key": key, "value": properties[key]})

    def issue_properties(self, key: str) -> dict[str, Any]:
        """The entity properties an issue was created with (key -> value)."""
        issue = self.issue(key)
        return dict(self._issue_properties.get(issue["id"], {})) if issue else {}

    def _all_comments(self) -> list[dict[str, Any]]:
        return [c for comments in self._comments.values() for c in comments]

    def _comment_by_id(self, comment_id: str) -> dict[str, Any] | None:
        return next((c for c in self._all_comments() if c["id"] == comment_id), None)

    def _rendered(self, comment: dict[str, Any], expand: set[str]) -> dict[str, Any]:
        """A stored Comment as Jira answers it: `properties` only when expanded."""
        if "properties" not in expand:
            return comment
        properties = self._comment_properties.get(comment["id"], {})
        return {**comment, "properties": [{"key": k, "value": v} for k, v in properties.items()]}

    async def _create_issue(self, request: web.Request) -> web.Response:
        """createIssue: `fields.project.key`, `summary`, `issuetype` required (as Jira Cloud
        refuses without them); the key is the project's next number. Answers a CreatedIssue."""
        payload = _json_or_none(await request.read())
        fields = payload.get("fields") if isinstance(payload, dict) else None
        if not isinstance(fields, dict):
            return _errors(400, ["send {fields: {...}}"])
        project = (fields.get("project") or {}).get("key") if isinstance(fields.get("project"), dict) else None
        errors = {
            name: message
            for name, message, ok in (
                ("project", "Specify a valid project ID or key", isinstance(project, str) and project),
                ("summary", "You must specify a summary of the issue.", isinstance(fields.get("summary"), str)),
                ("issuetype", "Specify an issue type", isinstance(fields.get("issuetype"), dict)),
            )
            if not ok
        }
        if errors or project in self.closed_projects:
            return web.json_response(
                {"errorMessages": [], "errors": errors or {"project": "Specify a valid project ID or key"}}, status=400
            )
        properties = _entity_properties(payload.get("properties", []))
        if properties is None:
            return _errors(400, ["Properties must be a list of objects with a key (1-255 characters) and a value."])
        if fields.get("description") is not None and adf_problems(fields["description"]):
            return web.json_response(
                {"errorMessages": [], "errors": {"description": "Operation value must be an Atlassian Document"}},
                status=400,
            )
        number = 1 + max((int(k.rpartition("-")[2]) for k in self._issues if k.startswith(f"{project}-")), default=0)
        key = f"{project}-{number}"
        issue = await self.put_issue(key, fields["summary"], project=project)
        issue["fields"]["labels"] = [str(label) for label in fields.get("labels") or []]
        issue["fields"]["description"] = fields.get("description")
        if properties:
            self._issue_properties[issue["id"]] = properties
        self.created.append(key)
        return web.json_response({"id": issue["id"], "key": key, "self": issue["self"]}, status=201)

    async def _search(self, request: web.Request) -> web.Response:
        """searchForIssuesUsingJqlPost, for the two JQL forms threadlink sends: `labels = "x"`
        (optionally `ORDER BY created ASC`), and its poll, `[(project = A | project in (A, B)) AND]
        updated >= "yyyy/MM/dd HH:mm" ORDER BY updated ASC, key ASC` (dates in the account's time
        zone, UTC here; to the minute, as Jira compares them). Anything else is a 400, as an
        unknown field is."""
        payload = _json_or_none(await request.read())
        jql = payload.get("jql") if isinstance(payload, dict) else None
        limit = _int(str(payload.get("maxResults", 50)), 50) if isinstance(payload, dict) else 50
        start = _int(str(payload.get("startAt", 0)), 0) if isinstance(payload, dict) else 0
        fields = _requested_fields([str(f) for f in payload.get("fields") or []]) if isinstance(payload, dict) else None
        by_label = re.fullmatch(r'\s*labels\s*=\s*"([^"]+)"(?:\s+ORDER BY created ASC)?\s*', jql or "")
        polled = re.fullmatch(
            r"\s*(?:\((project\s*=\s*[A-Z][A-Z0-9]*|project\s+in\s*\([A-Z0-9,\s]+\))\)\s+AND\s+)?"
            r'updated\s*>=\s*"(\d{4}/\d{2}/\d{2} \d{2}:\d{2})"\s+ORDER BY updated ASC, key ASC\s*',
            jql or "",
        )
        if by_label is not None:
            found = [i for i in self._issues.values() if by_label.group(1) in (i["fields"].get("labels") or [])]
            page = [
                {k: issue[k] for k in ("id", "self", "key")} | {"fields": {"summary": issue["fields"]["summary"]}}
                for issue in found[start : start + limit]
            ]
        elif polled is not None:
            condition = polled.group(1)
            named = re.split(r"=|\bin\b", condition, maxsplit=1)[1] if condition else ""
            projects = set(re.findall(r"[A-Z][A-Z0-9]*", named)) if condition else None
            since = datetime.strptime(polled.group(2), "%Y/%m/%d %H:%M").replace(tzinfo=UTC)
            found = sorted(
                (
                    i
                    for i in self._issues.values()
                    if datetime.strptime(i["fields"]["updated"], "%Y-%m-%dT%H:%M:%S.%f%z") >= since
                    and (projects is None or i["fields"]["project"]["key"] in projects)
                ),
                key=lambda i: (i["fields"]["updated"], i["key"]),
            )
            page = [self._searched(issue, fields) for issue in found[start : start + limit]]
        else:
            return _errors(400, [f"the sandbox does not understand the search {jql!r}"])
        return web.json_response(
            {"expand": "names,schema", "startAt": start, "maxResults": limit, "total": len(found), "issues": page}
        )

    def _searched(self, issue: dict[str, Any], fields: set[str] | None) -> dict[str, Any]:
        """An issue as a search lists it: the requested fields, comments as a page of them."""
        shown = {name: value for name, value in issue["fields"].items() if fields is None or name in fields}
        if fields is None or "comment" in fields:
            comments = self._comments.get(issue["key"], [])
            shown["comment"] = {"comments": comments, "maxResults": len(comments), "total": len(comments), "startAt": 0}
        return {k: issue[k] for k in ("expand", "id", "self", "key")} | {"fields": shown}

    async def add_agent_comment(
        self, key: str, text: str, *, author: str = "Agent Smith", public: bool = True
    ) -> dict[str, Any]:
        """Someone other than threadlink comments on an issue (an internal note unless
        `public`): stored, and `comment_created` delivered (awaited)."""
        issue = self.issue(key)
        if issue is None:
            raise KeyError(key)
        now = jira_time(self._clock())
        comment_id = str(next(self._comment_ids))
        person = self._user(author)
        comment: dict[str, Any] = {
            "self": f"{self._url}/rest/api/3/issue/{issue['id']}/comment/{comment_id}",
            "id": comment_id,
            "author": person,
            "body": {
                "type": "doc",
                "version": 1,
                "content": [{"type": "paragraph", "content": [{"type": "text", "text": text}]}],
            },
            "updateAuthor": person,
            "created": now,
            "updated": now,
            "jsdPublic": public,
        }
        self._comments.setdefault(issue["key"], []).append(comment)
        issue["fields"]["updated"] = now  # as Jira does: a comment is a change of the issue
        if self.webhook_url:
            await self.deliver(self.comment_event(issue["key"], comment))
        return comment

    async def _put_remote_link(self, request: web.Request) -> web.Response:
        """createOrUpdateRemoteIssueLink: `object.url` and `object.title` required (Jira answers
        400 without them); a link with the same `globalId` on the issue is updated (fields the
        request leaves out become null, as documented) and answered 200, a new one 201."""
        issue = self.issue(request.match_info["issueIdOrKey"])
        if issue is None:
            return _errors(404, [NOT_FOUND_MESSAGE])
        payload = _json_or_none(await request.read())
        remote = payload.get("object") if isinstance(payload, dict) else None
        errors = {
            name: message
            for name, message, ok in (
                ("object", "Remote object is required.", isinstance(remote, dict)),
                ("url", "Url is required.", isinstance(remote, dict) and isinstance(remote.get("url"), str)),
                ("title", "Title is required.", isinstance(remote, dict) and bool(remote.get("title"))),
                (
                    "globalId",
                    "Global ID must be a string of at most 255 characters.",
                    isinstance(payload, dict)
                    and (
                        payload.get("globalId") is None
                        or (isinstance(payload["globalId"], str) and len(payload["globalId"]) <= 255)
                    ),
                ),
            )
            if not ok
        }
        if errors or not isinstance(payload, dict):
            return web.json_response({"errorMessages": [], "errors": errors}, status=400)
        links = self._remote_links.setdefault(issue["key"], [])
        global_id = payload.get("globalId")
        existing = next((link for link in links if global_id and link.get("globalId") == global_id), None)
        link_id = existing["id"] if existing else next(self._link_ids)
        link = {
            "id": link_id,
            "self": f"{self._url}/rest/api/3/issue/{issue['key']}/remotelink/{link_id}",
            **{
                name: payload[name] for name in ("globalId", "application", "relationship", "object") if name in payload
            },
        }
        if existing is not None:
            links[links.index(existing)] = link
        else:
            links.append(link)
        return web.json_response({"id": link_id, "self": link["self"]}, status=200 if existing else 201)

    async def _get_remote_link(self, request: web.Request) -> web.Response:
        """getRemoteIssueLinks with `globalId` (the one link with it, or 404). Without it Jira
        answers a list, which the spec does not describe: the fake serves the documented form only."""
        issue = self.issue(request.match_info["issueIdOrKey"])
        if issue is None:
            return _errors(404, [NOT_FOUND_MESSAGE])
        global_id = request.query.get("globalId")
        if not global_id:
            return _errors(400, ["the sandbox answers getRemoteIssueLinks only with a globalId"])
        found = next(
            (link for link in self._remote_links.get(issue["key"], []) if link.get("globalId") == global_id), None
        )
        if found is None:
            return _errors(404, ["No remote link with that global ID."])
        return web.json_response(found)

    async def _myself(self, _request: web.Request) -> web.Response:
        return web.json_response({**self.me, "locale": "en_US"})

    async def _sandbox_put_issue(self, request: web.Request) -> web.Response:
        payload = _json_or_none(await request.read())
        if not isinstance(payload, dict) or not payload.get("key") or not payload.get("summary"):
            return _errors(400, ["send a JSON object with at least key and summary"])
        allowed = ("status", "assignee", "priority", "project")
        issue = await self.put_issue(
            payload["key"], payload["summary"], **{k: payload[k] for k in allowed if payload.get(k) is not None}
        )
        return web.json_response(issue, status=201)

    async def _sandbox_comments(self, request: web.Request) -> web.Response:
        if self.issue(request.match_info["key"]) is None:
            return _errors(404, [NOT_FOUND_MESSAGE])
        return web.json_response(self.comments(request.match_info["key"]))

    # -- shapes --------------------------------------------------------------------------

    def _user(self, display_name: str, *, email: str | None = None) -> dict[str, Any]:
        account_id = hashlib.sha1(display_name.encode(), usedforsecurity=False).hexdigest()[:24]
        user: dict[str, Any] = {
            "self": f"{self._url}/rest/api/3/user?accountId={account_id}",
            "accountId": account_id,
            "displayName": display_name,
            "active": True,
            "timeZone": "Etc/UTC",
            "accountType": "atlassian",
        }
        if email:
            user["emailAddress"] = email
        return user

    def _status(self, name: str) -> dict[str, Any]:
        category_id, category_key, color, category_name = _STATUS_CATEGORIES.get(name, _STATUS_CATEGORIES["To Do"])
        status_id = str(10000 + sorted([*_STATUS_CATEGORIES, name]).index(name))
        return {
            "self": f"{self._url}/rest/api/3/status/{status_id}",
            "description": "",
            "iconUrl": f"{self._url}/images/icons/statuses/generic.png",
            "name": name,
            "id": status_id,
            "statusCategory": {
                "self": f"{self._url}/rest/api/3/statuscategory/{category_id}",
                "id": category_id,
                "key": category_key,
                "colorName": color,
                "name": category_name,
            },
        }

    def _priority(self, name: str) -> dict[str, Any]:
        priority_id = _PRIORITY_IDS.get(name, "3")
        return {
            "self": f"{self._url}/rest/api/3/priority/{priority_id}",
            "name": name,
            "id": priority_id,
            "iconUrl": f"{self._url}/images/icons/priorities/{name.lower()}.svg",
        }

    def _project(self, key: str) -> dict[str, Any]:
        project_id = self._project_ids.setdefault(key, str(10000 + len(self._project_ids)))
        return {
            "self": f"{self._url}/rest/api/3/project/{project_id}",
            "id": project_id,
            "key": key,
            "name": key.title(),
            "projectTypeKey": "software",
            "simplified": False,
        }


def _errors(status: int, messages: list[str], *, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"errorMessages": messages, "errors": {}}, status=status, headers=headers)


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _expands(request: web.Request) -> set[str]:
    """The `expand` query parameter as a set of names (comma-separated, possibly repeated)."""
    return {name.strip() for value in request.query.getall("expand", []) for name in value.split(",") if name.strip()}


def _entity_properties(value: Any) -> dict[str, Any] | None:
    """A create body's `properties` ([{key, value}]) as key -> value; None when malformed
    (Jira requires both, and keys of at most 255 characters)."""
    if not isinstance(value, list):
        return None
    properties: dict[str, Any] = {}
    for item in value:
        if not isinstance(item, dict) or "value" not in item:
            return None
        key = item.get("key")
        if not isinstance(key, str) or not 0 < len(key) <= 255:
            return None
        properties[key] = item["value"]
    return properties


def _redact(authorization: str) -> str:
    scheme, _, _ = authorization.partition(" ")
    return f"{scheme} <redacted>"


def _requested_fields(values: list[str]) -> set[str] | None:
    """The `fields` query parameter as a set of names; None means all of them."""
    names = {name.strip() for value in values for name in value.split(",") if name.strip()}
    if not names or names & {"*all", "*navigable"}:
        return None
    return {name for name in names if not name.startswith("-")}


def _changelog(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    items = []
    for name, attribute in (("summary", None), ("status", "name"), ("assignee", "displayName"), ("priority", "name")):
        old, new = before["fields"].get(name), after["fields"].get(name)
        old_s = old.get(attribute) if attribute and old else old
        new_s = new.get(attribute) if attribute and new else new
        if old_s != new_s:
            items.append(
                {
                    "field": name,
                    "fieldtype": "jira",
                    "fieldId": name,
                    "from": (old or {}).get("id") if attribute == "name" else None,
                    "fromString": old_s,
                    "to": (new or {}).get("id") if attribute == "name" else None,
                    "toString": new_s,
                }
            )
    return items


def _adf_to_wiki(node: Any) -> str:
    """ADF to the wiki-markup string Jira Cloud puts in comment webhooks (the subset we write)."""
    if not isinstance(node, dict):
        return str(node or "")
    kind = node.get("type")
    if kind == "text":
        href = next((m.get("attrs", {}).get("href") for m in node.get("marks", []) if m.get("type") == "link"), None)
        return f"[{node['text']}|{href}]" if href else node.get("text", "")
    if kind == "hardBreak":
        return "\n"
    parts = [_adf_to_wiki(child) for child in node.get("content", [])]
    if kind == "doc":
        return "\n\n".join(parts)
    if kind == "blockquote":
        return "{quote}" + "\n\n".join(parts) + "{quote}"
    return "".join(parts)
