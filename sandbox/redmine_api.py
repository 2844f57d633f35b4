"""A local stand-in for Redmine's REST API, for unit and conformance tests. SANDBOX ONLY: the
integration tests run against a real Redmine (tests/integration/redmine_server.py).

It serves the calls threadlink makes, in the shapes a real Redmine 5.0 answers (captured from
Debian's package with login required): `GET /users/current.json`, `GET /issues.json` with
`status_id`, `project_id`, `updated_on=>=<ISO>`, `subject=~<text>`, `sort`, `offset` and
`limit` (at most 100), `GET /issues/N.json[?include=journals]`, `POST /issues.json` (201, or
422 with `errors`), `PUT /issues/N.json` with notes (204). Auth is `X-Redmine-API-Key`; a
missing or wrong key is a 401, as with `login_required`. Redmine publishes no OpenAPI
document, so `violations` holds what a real Redmine would not take: unknown routes, bodies
that are not JSON objects, `limit` over 100, an `updated_on` filter without an operator.

Usage::

    redmine = FakeRedmine(api_key="k")
    await redmine.start()                   # redmine.url -> http://127.0.0.1:<port>
    redmine.put_project("ops")
    issue = redmine.put_issue("ops", "Checkout is down")
    redmine.add_journal(issue["id"], "secret", private=True)
    ...
    redmine.assert_no_violations()
    await redmine.stop()
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

PAGE_LIMIT = 100


def redmine_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    json: Any
    authenticated: bool


@dataclass
class _Failure:
    status: int
    retry_after: float | None
    path_prefix: str | None


class FakeRedmine:
    """Lifecycle: `await start()` before use, `await stop()` after."""

    def __init__(self, *, api_key: str, clock: Callable[[], datetime] | None = None) -> None:
        self._api_key = api_key
        self._clock = clock or (lambda: datetime.now(UTC))
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self.projects: dict[str, dict[str, Any]] = {}
        self.issues: dict[int, dict[str, Any]] = {}
        self.journals: dict[int, list[dict[str, Any]]] = {}
        self.user: dict[str, Any] = {"id": 1, "login": "admin", "firstname": "Redmine", "lastname": "Admin"}
        self._failures: list[_Failure] = []
        self._runner: web.AppRunner | None = None
        self._url = ""
        self._next_journal = 1

    @property
    def url(self) -> str:
        return self._url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/users/current.json", self._current_user)
        app.router.add_get("/issues.json", self._list_issues)
        app.router.add_post("/issues.json", self._create_issue)
        app.router.add_get(r"/issues/{id:\d+}.json", self._get_issue)
        app.router.add_put(r"/issues/{id:\d+}.json", self._update_issue)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self._url = f"http://{host}:{self._runner.addresses[0][1]}"
        return self._url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- controls ------------------------------------------------------------------------------

    def fail_next(self, status: int, *, retry_after: float | None = None, path_prefix: str | None = None) -> None:
        """Answer the next REST call (under `path_prefix`, if given) with `status` instead."""
        self._failures.append(_Failure(status, retry_after, path_prefix))

    def assert_no_violations(self) -> None:
        if self.violations:
            raise AssertionError("requests a real Redmine would refuse: " + "; ".join(self.violations))

    def put_project(self, identifier: str) -> dict[str, Any]:
        project = {"id": len(self.projects) + 1, "name": identifier.title(), "identifier": identifier}
        self.projects[identifier] = project
        return project

    def put_issue(self, project: str, subject: str, *, is_private: bool = False, **extra: Any) -> dict[str, Any]:
        proj = self.projects[project]
        now = redmine_time(self._clock())
        issue_id = max(self.issues, default=0) + 1
        issue = {
            "id": issue_id,
            "project": {"id": proj["id"], "name": proj["name"]},
            "tracker": {"id": 1, "name": "Bug"},
            "status": {"id": 1, "name": "New", "is_closed": False},
            "priority": {"id": 2, "name": "Normal"},
            "author": {"id": self.user["id"], "name": "Redmine Admin"},
            "subject": subject,
            "description": "",
            "is_private": is_private,
            "created_on": now,
            "updated_on": now,
            "closed_on": None,
            **extra,
        }
        self.issues[issue_id] = issue
        self.journals[issue_id] = []
        return issue

    def add_journal(self, issue_id: int, notes: str, *, private: bool = False, user_id: int = 2) -> dict[str, Any]:
        now = redmine_time(self._clock())
        journal = {
            "id": self._next_journal,
            "user": {"id": user_id, "name": "Redmine Admin" if user_id == self.user["id"] else "Ada Lovelace"},
            "notes": notes,
            "created_on": now,
            "private_notes": private,
            "details": [],
        }
        self._next_journal += 1
        self.journals[issue_id].append(journal)
        self.issues[issue_id]["updated_on"] = now
        return journal

    # -- serving -------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            if not isinstance(body, dict):
                self.violations.append(f"{request.method} {request.path}: body is not a JSON object")
        authenticated = request.headers.get("X-Redmine-API-Key") == self._api_key
        self.requests.append(RecordedRequest(request.method, request.path, dict(request.query), body, authenticated))
        for failure in self._failures:
            if failure.path_prefix is None or request.path.startswith(failure.path_prefix):
                self._failures.remove(failure)
                headers = {"Retry-After": f"{failure.retry_after:g}"} if failure.retry_after is not None else {}
                return web.json_response({"errors": ["injected"]}, status=failure.status, headers=headers)
        if not authenticated:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="Redmine API"'})
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return web.Response(status=404)

    async def _current_user(self, request: web.Request) -> web.Response:
        return web.json_response({"user": self.user})

    def _issue_json(self, issue_id: int, *, journals: bool) -> dict[str, Any]:
        issue = dict(self.issues[issue_id])
        if journals:
            issue["journals"] = list(self.journals[issue_id])
        return issue

    async def _list_issues(self, request: web.Request) -> web.Response:
        q = request.query
        limit = int(q.get("limit", "25"))
        if limit > PAGE_LIMIT:
            self.violations.append(f"GET /issues.json: limit={limit} over {PAGE_LIMIT} (Redmine answers 100)")
            limit = PAGE_LIMIT
        offset = int(q.get("offset", "0"))
        issues = list(self.issues.values())
        if q.get("status_id") != "*":
            issues = [i for i in issues if not i["status"]["is_closed"]]
        if "project_id" in q:
            project = self.projects.get(q["project_id"])
            if project is None:
                return web.Response(status=404)
            issues = [i for i in issues if i["project"]["id"] == project["id"]]
        if "updated_on" in q:
            op, value = q["updated_on"][:2], q["updated_on"][2:]
            if op != ">=":
                self.violations.append(f"GET /issues.json: updated_on={q['updated_on']!r} has no >= operator")
            else:
                since = datetime.fromisoformat(value)
                issues = [i for i in issues if datetime.fromisoformat(i["updated_on"]) >= since]
        if q.get("subject", "").startswith("~"):
            text = q["subject"][1:].lower()
            issues = [i for i in issues if text in i["subject"].lower()]
        sort = q.get("sort", "id:desc")
        if sort.startswith("updated_on"):
            issues.sort(key=lambda i: (i["updated_on"], i["id"]))
        elif sort == "id":
            issues.sort(key=lambda i: i["id"])
        else:
            issues.sort(key=lambda i: -i["id"])
        page = issues[offset : offset + limit]
        return web.json_response({"issues": page, "total_count": len(issues), "offset": offset, "limit": limit})

    async def _get_issue(self, request: web.Request) -> web.Response:
        issue_id = int(request.match_info["id"])
        if issue_id not in self.issues:
            raise web.HTTPNotFound()
        journals = "journals" in request.query.get("include", "")
        return web.json_response({"issue": self._issue_json(issue_id, journals=journals)})

    async def _create_issue(self, request: web.Request) -> web.Response:
        fields = (await _body(request)).get("issue") or {}
        errors = []
        if fields.get("project_id") not in self.projects:
            errors += ["Project cannot be blank", "Tracker cannot be blank", "Status cannot be blank"]
        if not str(fields.get("subject") or "").strip():
            errors.append("Subject cannot be blank")
        if errors:
            return web.json_response({"errors": errors}, status=422)
        issue = self.put_issue(fields["project_id"], fields["subject"], description=fields.get("description") or "")
        return web.json_response({"issue": issue}, status=201)

    async def _update_issue(self, request: web.Request) -> web.Response:
        issue_id = int(request.match_info["id"])
        if issue_id not in self.issues:
            raise web.HTTPNotFound()
        fields = (await _body(request)).get("issue") or {}
        if fields.get("notes"):
            self.add_journal(
                issue_id, fields["notes"], private=fields.get("private_notes") is True, user_id=self.user["id"]
            )
        else:
            self.issues[issue_id]["updated_on"] = redmine_time(self._clock() + timedelta(0))
        return web.Response(status=204)


async def _body(request: web.Request) -> dict[str, Any]:
    """The JSON object the middleware already read (aiohttp keeps the body read once)."""
    try:
        body = json.loads(await request.read())
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
