"""A local stand-in for GitHub's REST API (issues) and its issue webhooks, for demos and tests.
SANDBOX ONLY: nothing points at it unless a config or a test says so.

It serves the calls threadlink makes (get an issue, list a repository's issues with `labels`,
`state`, `sort`, `direction` and `Link` pagination, create an issue, list and add comments) with
`Authorization: Bearer <token>` checked as GitHub does (401 "Bad credentials"), the
`X-GitHub-Api-Version` header required to be a version GitHub serves (400 otherwise), GitHub's
rate-limit headers on every answer, and a 301 for an issue transferred elsewhere. Webhooks are
built and signed as GitHub sends them (`X-GitHub-Event`, `X-GitHub-Delivery`,
`X-Hub-Signature-256`). Every request and every answer is checked against GitHub's OpenAPI
description, every webhook payload against its `x-webhooks` schema; differences land in
`violations` (see sandbox/contracts/github.py).

Objects are GitHub's own examples (`#/components/examples/issue`, `issue-comment`) with the
stand-in's values put in, so they carry every field real answers carry.

Usage::

    github = FakeGitHub(token="t", webhook_secret="s", webhook_url="http://127.0.0.1:8787/webhooks/github")
    await github.start()                       # github.url -> http://127.0.0.1:<port>
    github.add_repo("acme/shop", private=True)
    await github.put_issue("acme/shop", "Checkout is down")   # delivers issues.opened
    ...
    github.assert_no_violations()
    await github.stop()
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import itertools
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from sandbox.contracts.github import ContractViolation, GitHubContract, Violation, github_contract

log = logging.getLogger(__name__)

API_VERSIONS = ("2022-11-28", "2026-03-10")
DOCS = "https://docs.github.com/rest"
_REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "eyes", "rocket")


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
    """One webhook POST the fake made."""

    event: str
    action: str
    delivery: str
    status: int | None
    error: str | None = None


@dataclass
class _Failure:
    status: int
    retry_after: float | None
    rate_limit_reset_in: float | None
    path_prefix: str | None
    method: str | None
    after_store: bool = False


def github_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign(secret: str, body: bytes) -> str:
    """`X-Hub-Signature-256` of `body`, computed here independently of the connector."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class FakeGitHub:
    """Lifecycle: `await start()` before use, `await stop()` after (also waits for webhooks in flight)."""

    def __init__(
        self,
        *,
        token: str,
        webhook_secret: str,
        webhook_url: str | None = None,
        login: str = "threadlink-bot",
        strict: bool = False,
        contract: GitHubContract | None = None,
        check_contracts: bool = True,
        page_limit: int = 100,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._token = token
        self._webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.login = login
        self.strict = strict
        self._contract = (contract or github_contract()) if check_contracts else None
        self.page_limit = max(1, page_limit)
        """The most items one page holds, whatever per_page asks (GitHub: 100)."""
        self._clock = clock or (lambda: datetime.now(UTC))
        self.requests: list[RecordedRequest] = []
        self.violations: list[Violation] = []
        self.deliveries: list[Delivery] = []
        self.created: list[str] = []
        """Keys (`owner/repo#n`) of the issues created over REST, in order."""
        self._repos: dict[str, dict[str, Any]] = {}
        self._issues: dict[str, dict[int, dict[str, Any]]] = {}
        self._comments: dict[str, list[dict[str, Any]]] = {}
        self._moved: dict[str, str] = {}
        self._ids = itertools.count(1_000_000)
        self._failures: list[_Failure] = []
        self.rate_limit_remaining = 5000
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._url = "http://127.0.0.1:0"

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The REST API root to configure as `api_url` (valid after `start()`)."""
        return self._url

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/repos/{owner}/{repo}/issues", self._list_issues)
        app.router.add_post("/repos/{owner}/{repo}/issues", self._create_issue)
        app.router.add_get("/repos/{owner}/{repo}/issues/{number}", self._get_issue)
        app.router.add_get("/repos/{owner}/{repo}/issues/{number}/comments", self._list_comments)
        app.router.add_post("/repos/{owner}/{repo}/issues/{number}/comments", self._add_comment)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
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

    async def __aenter__(self) -> FakeGitHub:
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
        rate_limit_reset_in: float | None = None,
        path_prefix: str | None = None,
        method: str | None = None,
        after_store: bool = False,
    ) -> None:
        """Answer the next `times` REST calls (optionally only `method` calls under
        `path_prefix`) with `status` instead of serving them: with `Retry-After` when given (a
        secondary rate limit), with `x-ratelimit-remaining: 0` and a reset that many seconds
        ahead when `rate_limit_reset_in` is given (the primary limit). `after_store=True` serves
        the call first and answers `status` all the same (GitHub failing after the work)."""
        self._failures.extend(
            _Failure(status, retry_after, rate_limit_reset_in, path_prefix, method, after_store) for _ in range(times)
        )

    def assert_no_violations(self) -> None:
        if self.violations:
            raise ContractViolation(self.violations)

    def add_repo(self, full_name: str, *, private: bool = False) -> dict[str, Any]:
        owner, name = full_name.split("/")
        repo = self._repository(owner, name, private=private)
        self._repos[full_name.lower()] = repo
        self._issues.setdefault(full_name.lower(), {})
        return repo

    def issue(self, repo: str, number: int) -> dict[str, Any] | None:
        return self._issues.get(repo.lower(), {}).get(number)

    def comments(self, repo: str, number: int) -> list[dict[str, Any]]:
        return list(self._comments.get(f"{repo.lower()}#{number}", []))

    async def put_issue(
        self,
        repo: str,
        title: str,
        *,
        number: int | None = None,
        state: str = "open",
        state_reason: str | None = None,
        assignee: str | None = None,
        labels: list[str] | None = None,
        body: str = "",
        author: str = "octocat",
    ) -> dict[str, Any]:
        """Create (no `number`, or a new one) or update an issue; with a `webhook_url`, deliver
        `issues` `opened`, or `edited` / `closed` / `reopened` as what changed. Returns it."""
        full = repo.lower()
        if full not in self._repos:
            self.add_repo(repo)
        issues = self._issues[full]
        number = number or 1 + max(issues, default=0)
        previous = issues.get(number)
        now = github_time(self._clock())
        issue = self._issue_object(full, number, title, body, author)
        issue.update(
            state=state,
            state_reason=state_reason if state == "closed" else None,
            assignee=self._user(assignee) if assignee else None,
            assignees=[self._user(assignee)] if assignee else [],
            labels=[self._label(full, name) for name in labels or []],
            created_at=previous["created_at"] if previous else now,
            updated_at=now,
            closed_at=now if state == "closed" else None,
            comments=len(self._comments.get(f"{full}#{number}", [])),
        )
        issues[number] = issue
        if self.webhook_url:
            if previous is None:
                action = "opened"
            elif previous["state"] != state:
                action = "closed" if state == "closed" else "reopened"
            else:
                action = "edited"
            await self.deliver("issues", self.issue_event(action, full, number))
        return issue

    async def delete_issue(self, repo: str, number: int) -> None:
        issue = self.issue(repo, number)
        if issue is None:
            return
        payload = self.issue_event("deleted", repo, number)
        del self._issues[repo.lower()][number]
        if self.webhook_url:
            await self.deliver("issues", payload)

    def transfer_issue(self, repo: str, number: int, to_repo: str) -> dict[str, Any]:
        """Move an issue to another repository; the old address answers 301 to the new one."""
        issue = self._issues[repo.lower()].pop(number)
        moved = self._issue_object(
            to_repo.lower(), 1 + max(self._issues.get(to_repo.lower(), {}), default=0), "", "", ""
        )
        if to_repo.lower() not in self._repos:
            self.add_repo(to_repo)
        moved.update({k: issue[k] for k in ("title", "body", "user", "state", "labels", "assignee", "assignees")})
        self._issues[to_repo.lower()][moved["number"]] = moved
        self._moved[f"{repo.lower()}#{number}"] = moved["url"].removeprefix(self._url)
        return moved

    async def add_user_comment(self, repo: str, number: int, body: str, *, author: str = "octocat") -> dict[str, Any]:
        """Someone comments on an issue; with a `webhook_url`, `issue_comment` `created` is delivered."""
        comment = self._store_comment(repo.lower(), number, body, author)
        if self.webhook_url:
            await self.deliver("issue_comment", self.comment_event("created", repo, number, comment))
        return comment

    # -- webhooks ------------------------------------------------------------------------

    def issue_event(self, action: str, repo: str, number: int) -> dict[str, Any]:
        """An `issues` webhook payload for a stored issue."""
        issue = self.issue(repo, number)
        if issue is None:
            raise KeyError(f"{repo}#{number}")
        payload: dict[str, Any] = copy.deepcopy(  # a test may change the payload, not the stored issue
            {
                "action": action,
                "issue": issue,
                "repository": self._repos[repo.lower()],
                "sender": self._user(self.login),
            }
        )
        if action == "edited":
            payload["changes"] = {"title": {"from": payload["issue"]["title"]}}
        if action == "transferred":
            payload["changes"] = {"new_issue": payload["issue"], "new_repository": payload["repository"]}
        if action in ("labeled", "unlabeled") and payload["issue"]["labels"]:
            payload["label"] = payload["issue"]["labels"][-1]
        return payload

    def comment_event(self, action: str, repo: str, number: int, comment: dict[str, Any]) -> dict[str, Any]:
        """An `issue_comment` webhook payload."""
        issue = self.issue(repo, number)
        if issue is None:
            raise KeyError(f"{repo}#{number}")
        payload: dict[str, Any] = copy.deepcopy(
            {
                "action": action,
                "issue": issue,
                "comment": {**comment, "performed_via_github_app": None},
                "repository": self._repos[repo.lower()],
                "sender": comment["user"],
            }
        )
        if action == "edited":
            payload["changes"] = {"body": {"from": comment["body"]}}
        return payload

    def signed(
        self, event: str, payload: dict[str, Any], *, delivery: str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers GitHub would send: the payload is checked against its
        `x-webhooks` schema (`ping` has none there), signed with the webhook secret."""
        if self._contract is not None and event != "ping":
            found = self._contract.check_webhook(event, payload)
            self.violations.extend(found)
            if found and self.strict:
                raise ContractViolation(found)
        body = json.dumps(payload, separators=(",", ":")).encode()
        return body, {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/threadlink-sandbox",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-GitHub-Hook-ID": "1",
            "X-Hub-Signature-256": sign(self._webhook_secret, body),
        }

    async def deliver(self, event: str, payload: dict[str, Any], *, delivery: str | None = None) -> Delivery:
        """POST one webhook to `webhook_url` (GitHub does not retry on its own; a redelivery is
        the same call with the same `delivery`)."""
        if not self.webhook_url or self._session is None:
            raise RuntimeError("FakeGitHub has no webhook_url, or is not started")
        body, headers = self.signed(event, payload, delivery=delivery)
        done = Delivery(event, str(payload.get("action")), headers["X-GitHub-Delivery"], None)
        try:
            async with self._session.post(self.webhook_url, data=body, headers=headers) as response:
                done.status = response.status
        except aiohttp.ClientError as exc:
            done.error = type(exc).__name__
        self.deliveries.append(done)
        return done

    async def wait_deliveries(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- HTTP ----------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read()
        parsed = _json_or_none(raw)
        authenticated = self._authenticated(request)
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=list(request.query.items()),
                headers={k: (_redact(v) if k.lower() == "authorization" else v) for k, v in request.headers.items()},
                json=parsed,
                body=raw,
                authenticated=authenticated,
            )
        )
        if self._contract is not None:
            found = self._contract.check_request(
                request.method,
                request.path,
                query=list(request.query.items()),
                body=parsed,
                has_body=bool(raw),
                content_type=request.headers.get("Content-Type") if raw else None,
            )
            accept = request.headers.get("Accept", "")
            if "application/vnd.github" not in accept and "application/json" not in accept:
                found.append(Violation(request.method, request.path, "request.headers", f"Accept {accept!r}"))
            self.violations.extend(found)
            if found and self.strict:
                return self._error(400, "; ".join(str(v) for v in found))
        version = request.headers.get("X-GitHub-Api-Version")
        if version is not None and version not in API_VERSIONS:
            return self._error(400, f"'{version}' is not a supported version for this endpoint.")
        failure = self._take_failure(request)
        if failure is not None and not failure.after_store:
            return self._injected(failure)
        if not authenticated:
            return self._error(401, "Bad credentials")
        self.rate_limit_remaining = max(0, self.rate_limit_remaining - 1)
        response = await handler(request)
        self._check_answer(request, response)
        if failure is not None:
            return self._injected(failure)
        response.headers.update(self._rate_headers())
        return response

    def _rate_headers(self, *, remaining: int | None = None, reset_in: float = 3600) -> dict[str, str]:
        left = self.rate_limit_remaining if remaining is None else remaining
        return {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": str(left),
            "x-ratelimit-used": str(5000 - left),
            "x-ratelimit-reset": str(int(self._clock().timestamp() + reset_in)),
            "x-ratelimit-resource": "core",
            "X-GitHub-Media-Type": "github.v3; format=json",
        }

    def _injected(self, failure: _Failure) -> web.Response:
        headers = self._rate_headers()
        if failure.retry_after is not None:
            headers["Retry-After"] = f"{failure.retry_after:g}"
        if failure.rate_limit_reset_in is not None:
            headers.update(self._rate_headers(remaining=0, reset_in=failure.rate_limit_reset_in))
        message = {
            401: "Bad credentials",
            403: "API rate limit exceeded" if failure.rate_limit_reset_in is not None else "Resource not accessible",
            404: "Not Found",
            410: "Issues are disabled for this repo",
            422: "Validation Failed",
            429: "You have exceeded a secondary rate limit.",
        }.get(failure.status, "Injected by FakeGitHub.fail_next.")
        return self._error(failure.status, message, headers=headers)

    def _error(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response(
            {"message": message, "documentation_url": DOCS, "status": str(status)}, status=status, headers=headers
        )

    def _check_answer(self, request: web.Request, response: web.StreamResponse) -> None:
        if self._contract is None or not isinstance(response, web.Response) or response.status == 301:
            return
        body: Any = None
        if response.body is not None and response.content_type == "application/json":
            body = json.loads(response.body)  # type: ignore[arg-type]
        found = self._contract.check_response(request.method, request.path, response.status, body)
        self.violations.extend(found)
        if found and self.strict:
            raise ContractViolation(found)

    def _authenticated(self, request: web.Request) -> bool:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return False
        return hmac.compare_digest(credentials.strip().encode(), self._token.encode())

    def _take_failure(self, request: web.Request) -> _Failure | None:
        for index, failure in enumerate(self._failures):
            if failure.path_prefix is not None and not request.path.startswith(failure.path_prefix):
                continue
            if failure.method is not None and failure.method.upper() != request.method:
                continue
            return self._failures.pop(index)
        return None

    def _repo_of(self, request: web.Request) -> str | None:
        full = f"{request.match_info['owner']}/{request.match_info['repo']}".lower()
        return full if full in self._repos else None

    def _number(self, request: web.Request) -> int | None:
        raw = request.match_info.get("number", "")
        return int(raw) if raw.isdigit() else None

    async def _get_issue(self, request: web.Request) -> web.StreamResponse:
        repo, number = self._repo_of(request), self._number(request)
        moved = self._moved.get(f"{repo}#{number}")
        if moved is not None:
            return web.json_response(
                {"message": "Moved Permanently", "url": f"{self._url}{moved}", "documentation_url": DOCS},
                status=301,
                headers={"Location": f"{self._url}{moved}"},
            )
        issue = self.issue(repo, number) if repo and number else None
        if issue is None:
            return self._error(404, "Not Found")
        return web.json_response(issue)

    async def _list_issues(self, request: web.Request) -> web.Response:
        repo = self._repo_of(request)
        if repo is None:
            return self._error(404, "Not Found")
        query = request.query
        state = query.get("state", "open")
        labels = {name for name in query.get("labels", "").split(",") if name}
        found = [
            issue
            for issue in self._issues[repo].values()
            if (state == "all" or issue["state"] == state) and labels <= {label["name"] for label in issue["labels"]}
        ]
        sort = query.get("sort", "created")
        key = "updated_at" if sort == "updated" else "created_at"
        found.sort(key=lambda i: (i[key], i["number"]), reverse=query.get("direction", "desc") == "desc")
        return self._page(request, found)

    async def _create_issue(self, request: web.Request) -> web.Response:
        repo = self._repo_of(request)
        if repo is None:
            return self._error(404, "Not Found")
        payload = _json_or_none(await request.read())
        if not isinstance(payload, dict) or not isinstance(payload.get("title"), str | int) or payload["title"] == "":
            return self._error(422, "Validation Failed")
        issue = await self.put_issue(
            repo,
            str(payload["title"]),
            body=str(payload.get("body") or ""),
            labels=[str(label) for label in payload.get("labels") or [] if isinstance(label, str)],
            author=self.login,
        )
        self.created.append(f"{repo}#{issue['number']}")
        return web.json_response(issue, status=201)

    async def _list_comments(self, request: web.Request) -> web.Response:
        repo, number = self._repo_of(request), self._number(request)
        if repo is None or number is None or self.issue(repo, number) is None:
            return self._error(404, "Not Found")
        return self._page(request, self.comments(repo, number))

    async def _add_comment(self, request: web.Request) -> web.Response:
        repo, number = self._repo_of(request), self._number(request)
        if repo is None or number is None or self.issue(repo, number) is None:
            return self._error(404, "Not Found")
        payload = _json_or_none(await request.read())
        if not isinstance(payload, dict) or not isinstance(payload.get("body"), str) or not payload["body"]:
            return self._error(422, "Validation Failed")
        comment = self._store_comment(repo, number, payload["body"], self.login)
        if self.webhook_url and self._session is not None:
            # GitHub sends the webhook after answering, not during the request.
            task = asyncio.create_task(
                self.deliver("issue_comment", self.comment_event("created", repo, number, comment))
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response(comment, status=201)

    def _page(self, request: web.Request, items: list[dict[str, Any]]) -> web.Response:
        """One page of `items` by `per_page` and `page`, with GitHub's `Link` header."""
        per_page = min(self.page_limit, max(1, _int(request.query.get("per_page"), 30)))
        page = max(1, _int(request.query.get("page"), 1))
        chunk = items[(page - 1) * per_page : page * per_page]
        last = max(1, -(-len(items) // per_page))
        links = []

        def link(number: int, rel: str) -> str:
            query = {**request.query, "per_page": str(per_page), "page": str(number)}
            return f'<{self._url}{request.path}?{urlencode(query)}>; rel="{rel}"'

        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links += [link(1, "first"), link(page - 1, "prev")]
        headers = {"Link": ", ".join(links)} if links else None
        return web.json_response(chunk, headers=headers)

    # -- shapes --------------------------------------------------------------------------

    def _store_comment(self, repo: str, number: int, body: str, author: str) -> dict[str, Any]:
        comment_id = next(self._ids)
        now = github_time(self._clock())
        example = self._contract.example("issue-comment") if self._contract else {}
        owner, name = repo.split("/")
        comment = {
            **example,
            "id": comment_id,
            "node_id": f"IC_{comment_id}",
            "url": f"{self._url}/repos/{owner}/{name}/issues/comments/{comment_id}",
            "html_url": f"https://github.com/{owner}/{name}/issues/{number}#issuecomment-{comment_id}",
            "issue_url": f"{self._url}/repos/{owner}/{name}/issues/{number}",
            "body": body,
            "user": self._user(author),
            "created_at": now,
            "updated_at": now,
            "author_association": "MEMBER",
            "reactions": self._reactions(f"{self._url}/repos/{owner}/{name}/issues/comments/{comment_id}/reactions"),
        }
        self._comments.setdefault(f"{repo}#{number}", []).append(comment)
        issue = self.issue(repo, number)
        if issue is not None:
            issue["comments"] = len(self._comments[f"{repo}#{number}"])
        return comment

    def _issue_object(self, repo: str, number: int, title: str, body: str, author: str) -> dict[str, Any]:
        example = self._contract.example("issue") if self._contract else {}
        example.pop("repository", None)
        example.pop("pull_request", None)  # an issue, not a pull request
        owner, name = repo.split("/")
        api = f"{self._url}/repos/{owner}/{name}"
        issue_id = next(self._ids)
        return {
            **example,
            "id": issue_id,
            "node_id": f"I_{issue_id}",
            "url": f"{api}/issues/{number}",
            "repository_url": api,
            "labels_url": f"{api}/issues/{number}/labels{{/name}}",
            "comments_url": f"{api}/issues/{number}/comments",
            "events_url": f"{api}/issues/{number}/events",
            "html_url": f"https://github.com/{owner}/{name}/issues/{number}",
            "number": number,
            "title": title,
            "body": body,
            "user": self._user(author or "octocat"),
            "milestone": None,
            "closed_by": None,
            "pinned_comment": None,
            "locked": False,
            "active_lock_reason": None,
            "author_association": "MEMBER",
            "reactions": self._reactions(f"{api}/issues/{number}/reactions"),
        }

    @staticmethod
    def _reactions(url: str) -> dict[str, Any]:
        return {"url": url, "total_count": 0, **dict.fromkeys(_REACTIONS, 0)}

    def _label(self, repo: str, name: str) -> dict[str, Any]:
        owner, repo_name = repo.split("/")
        label_id = int(hashlib.sha1(f"{repo}:{name}".encode(), usedforsecurity=False).hexdigest()[:8], 16)
        return {
            "id": label_id,
            "node_id": f"LA_{label_id}",
            "url": f"{self._url}/repos/{owner}/{repo_name}/labels/{name}",
            "name": name,
            "description": None,
            "color": "ededed",
            "default": False,
        }

    def _user(self, login: str) -> dict[str, Any]:
        user_id = int(hashlib.sha1(login.encode(), usedforsecurity=False).hexdigest()[:7], 16)
        api = f"{self._url}/users/{login}"
        return {
            "login": login,
            "id": user_id,
            "node_id": f"U_{user_id}",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{user_id}",
            "gravatar_id": "",
            "url": api,
            "html_url": f"https://github.com/{login}",
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": "Bot" if login == self.login else "User",
            "site_admin": False,
        }

    def _repository(self, owner: str, name: str, *, private: bool) -> dict[str, Any]:
        api = f"{self._url}/repos/{owner}/{name}"
        repo_id = int(hashlib.sha1(f"{owner}/{name}".encode(), usedforsecurity=False).hexdigest()[:7], 16)
        templated = {
            "archive_url": "/{archive_format}{/ref}",
            "assignees_url": "/assignees{/user}",
            "blobs_url": "/git/blobs{/sha}",
            "branches_url": "/branches{/branch}",
            "collaborators_url": "/collaborators{/collaborator}",
            "comments_url": "/comments{/number}",
            "commits_url": "/commits{/sha}",
            "compare_url": "/compare/{base}...{head}",
            "contents_url": "/contents/{+path}",
            "contributors_url": "/contributors",
            "deployments_url": "/deployments",
            "downloads_url": "/downloads",
            "events_url": "/events",
            "forks_url": "/forks",
            "git_commits_url": "/git/commits{/sha}",
            "git_refs_url": "/git/refs{/sha}",
            "git_tags_url": "/git/tags{/sha}",
            "hooks_url": "/hooks",
            "issue_comment_url": "/issues/comments{/number}",
            "issue_events_url": "/issues/events{/number}",
            "issues_url": "/issues{/number}",
            "keys_url": "/keys{/key_id}",
            "labels_url": "/labels{/name}",
            "languages_url": "/languages",
            "merges_url": "/merges",
            "milestones_url": "/milestones{/number}",
            "notifications_url": "/notifications{?since,all,participating}",
            "pulls_url": "/pulls{/number}",
            "releases_url": "/releases{/id}",
            "stargazers_url": "/stargazers",
            "statuses_url": "/statuses/{sha}",
            "subscribers_url": "/subscribers",
            "subscription_url": "/subscription",
            "tags_url": "/tags",
            "teams_url": "/teams",
            "trees_url": "/git/trees{/sha}",
        }
        now = github_time(self._clock())
        return {
            "id": repo_id,
            "node_id": f"R_{repo_id}",
            "name": name,
            "full_name": f"{owner}/{name}",
            "private": private,
            "visibility": "private" if private else "public",
            "owner": {**self._user(owner), "type": "Organization"},
            "html_url": f"https://github.com/{owner}/{name}",
            "description": None,
            "fork": False,
            "url": api,
            **{field_name: api + suffix for field_name, suffix in templated.items()},
            "clone_url": f"https://github.com/{owner}/{name}.git",
            "git_url": f"git://github.com/{owner}/{name}.git",
            "ssh_url": f"git@github.com:{owner}/{name}.git",
            "svn_url": f"https://github.com/{owner}/{name}",
            "mirror_url": None,
            "homepage": None,
            "language": None,
            "license": None,
            "default_branch": "main",
            "forks": 0,
            "forks_count": 0,
            "open_issues": 0,
            "open_issues_count": 0,
            "stargazers_count": 0,
            "watchers": 0,
            "watchers_count": 0,
            "size": 0,
            "has_downloads": True,
            "has_issues": True,
            "has_projects": False,
            "has_wiki": False,
            "has_pages": False,
            "has_discussions": False,
            "topics": [],
            "archived": False,
            "disabled": False,
            "pushed_at": now,
            "created_at": now,
            "updated_at": now,
        }


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


def _redact(authorization: str) -> str:
    scheme, _, _ = authorization.partition(" ")
    return f"{scheme} <redacted>"
