"""A local stand-in for WordPress's REST API (`/wp-json/wp/v2`), for unit and conformance tests.
SANDBOX ONLY: the integration tests run against a real WordPress (tests/integration/wordpress_server.py).

It serves the calls threadlink makes, in the shapes a real WordPress 6.1 answers (captured from
Debian's package): the index (`_fields`), `GET /wp/v2/posts|pages` with `modified_after`
and `modified_before` (exclusive, whole seconds, converted to the site's time when they carry an
offset), `orderby=modified` (posts of one second in no fixed order, as MariaDB gives them) or
`id`, `order`, `exclude`, `status`, `context`, `tags`, `page`, `per_page` (at most 100; a page past the end is a 400
`rest_post_invalid_page_number`) and the `X-WP-Total`/`X-WP-TotalPages` headers,
`GET /wp/v2/posts|pages/N`, `GET /wp/v2/categories|tags` (`include`, `slug`), `POST /wp/v2/tags`
(400 `term_exists` for a taken slug), `POST /wp/v2/posts` and `GET /wp/v2/users/me`.

Auth is HTTP Basic with the application password. As in WordPress, a wrong one is not refused:
the request goes on as an anonymous visitor, who may list only published posts (any other
`status` is a 400 `rest_invalid_param` with `rest_forbidden_status`), gets a 401
`rest_forbidden_context` for `context=edit` and a 401 `rest_not_logged_in` for `users/me`.
WordPress publishes no OpenAPI document, so `violations` holds what a real one would not take:
unknown routes, bodies that are not JSON objects, `per_page` over 100, a `modified_after` that is
not a date-time.

Usage::

    wp = FakeWordPress(username="threadlink", app_password="abcd efgh")
    await wp.start()                       # wp.url -> http://127.0.0.1:<port>
    post = wp.put_post("Checkout is down", "<p>Restart the pod.</p>", status="draft")
    ...
    wp.assert_no_violations()
    await wp.stop()
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

PAGE_LIMIT = 100
AUTHENTICATED = web.RequestKey("authenticated", bool)
PUBLIC = "publish"


def wp_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


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
    method: str | None
    body: Any = None


class FakeWordPress:
    """Lifecycle: `await start()` before use, `await stop()` after. The site's clock is UTC."""

    def __init__(self, *, username: str, app_password: str) -> None:
        self._credential = base64.b64encode(f"{username}:{app_password}".encode()).decode()
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self.posts: dict[int, dict[str, Any]] = {}
        self.terms: dict[str, dict[int, dict[str, Any]]] = {"categories": {1: _term(1, "Uncategorized")}, "tags": {}}
        self._next_id = 1
        self._next_term = 2
        self._failures: list[_Failure] = []
        self._runner: web.AppRunner | None = None
        self._url = ""
        self._random = random.Random(7)

    @property
    def url(self) -> str:
        return self._url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/wp-json/", self._index)
        app.router.add_get("/wp-json/wp/v2/users/me", self._me)
        app.router.add_get(r"/wp-json/wp/v2/{kind:posts|pages}", self._list)
        app.router.add_get(r"/wp-json/wp/v2/{kind:posts|pages}/{id:\d+}", self._get)
        app.router.add_post("/wp-json/wp/v2/posts", self._create_post)
        app.router.add_get(r"/wp-json/wp/v2/{taxonomy:categories|tags}", self._list_terms)
        app.router.add_post("/wp-json/wp/v2/tags", self._create_tag)
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

    def fail_next(
        self,
        status: int,
        *,
        retry_after: float | None = None,
        path_prefix: str | None = None,
        method: str | None = None,
        body: Any = None,
    ) -> None:
        """Answer the next call (under `path_prefix`, of `method`) with `status` (and `body`, JSON)."""
        self._failures.append(_Failure(status, retry_after, path_prefix, method, body))

    def assert_no_violations(self) -> None:
        if self.violations:
            raise AssertionError("requests a real WordPress would refuse: " + "; ".join(self.violations))

    def put_term(self, taxonomy: str, name: str) -> int:
        term_id = self._next_term
        self._next_term += 1
        self.terms[taxonomy][term_id] = _term(term_id, name)
        return term_id

    def put_post(
        self,
        title: str,
        content: str = "",
        *,
        kind: str = "post",
        status: str = PUBLIC,
        modified: datetime | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A post (or `kind="page"`), modified `modified` (default now); `extra` overrides fields."""
        post_id = self._next_id
        self._next_id += 1
        at = wp_time(modified or datetime.now(UTC))
        post = {
            "id": post_id,
            "date_gmt": at,
            "modified": at,
            "modified_gmt": at,
            "password": "",
            "slug": title.lower().replace(" ", "-")[:50],
            "status": status,
            "type": kind,
            "link": f"{self._url}/{post_id}/{title.lower().replace(' ', '-')[:50]}/",
            "title": {"raw": title, "rendered": title},
            "content": {"raw": content, "rendered": content, "protected": False},
            "excerpt": {"raw": "", "rendered": "", "protected": False},
            **({"categories": [1], "tags": []} if kind == "post" else {}),
            **extra,
        }
        self.posts[post_id] = post
        return post

    def touch(self, post_id: int, modified: datetime | None = None, **fields: Any) -> None:
        at = wp_time(modified or datetime.now(UTC))
        self.posts[post_id].update(fields, modified=at, modified_gmt=at)

    # -- serving -------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body:
            try:
                body = json.loads(await request.read())
            except ValueError:
                body = None
            if not isinstance(body, dict):
                self.violations.append(f"{request.method} {request.path}: body is not a JSON object")
        authenticated = request.headers.get("Authorization") == f"Basic {self._credential}"
        self.requests.append(RecordedRequest(request.method, request.path, dict(request.query), body, authenticated))
        for failure in self._failures:
            if (failure.path_prefix is None or request.path.startswith(failure.path_prefix)) and (
                failure.method is None or failure.method == request.method
            ):
                self._failures.remove(failure)
                headers = {"Retry-After": f"{failure.retry_after:g}"} if failure.retry_after is not None else {}
                answer = failure.body if failure.body is not None else {"code": "injected", "message": "injected"}
                return web.json_response(answer, status=failure.status, headers=headers)
        request[AUTHENTICATED] = authenticated
        try:
            return await handler(request)
        except web.HTTPNotFound:
            self.violations.append(f"{request.method} {request.path}: no such route")
            return _error(404, "rest_no_route", "No route was found matching the URL and request method.")

    async def _index(self, request: web.Request) -> web.Response:
        index = {"name": "threadlink tests", "gmt_offset": "0", "timezone_string": "", "routes": {}}
        fields = request.query.get("_fields")
        return web.json_response({k: v for k, v in index.items() if not fields or k in fields.split(",")})

    async def _me(self, request: web.Request) -> web.Response:
        if not request[AUTHENTICATED]:
            return _error(401, "rest_not_logged_in", "You are not currently logged in.")
        return web.json_response({"id": 1, "name": "threadlink"})

    def _visible(self, request: web.Request, post: dict[str, Any]) -> bool:
        return request[AUTHENTICATED] or post["status"] == PUBLIC

    async def _list(self, request: web.Request) -> web.Response:
        q, kind = request.query, request.match_info["kind"][:-1]
        statuses = q.get("status", PUBLIC).split(",")
        if not request[AUTHENTICATED] and statuses != [PUBLIC]:
            return web.json_response(
                {
                    "code": "rest_invalid_param",
                    "message": "Invalid parameter(s): status",
                    "data": {
                        "status": 400,
                        "params": {"status": "Status is forbidden."},
                        "details": {"status": {"code": "rest_forbidden_status", "data": {"status": 401}}},
                    },
                },
                status=400,
            )
        if q.get("context") == "edit" and not request[AUTHENTICATED]:
            return _error(401, "rest_forbidden_context", "Sorry, you are not allowed to edit posts in this post type.")
        per_page = int(q.get("per_page", "10"))
        if per_page > PAGE_LIMIT:
            self.violations.append(f"GET {request.path}: per_page={per_page} over {PAGE_LIMIT}")
            return _error(400, "rest_invalid_param", "Invalid parameter(s): per_page")
        posts = [p for p in self.posts.values() if p["type"] == kind and ("any" in statuses or p["status"] in statuses)]
        for name, keep in (("modified_after", lambda m, t: m > t), ("modified_before", lambda m, t: m < t)):
            if name not in q:
                continue
            bound = _site_time(q[name])
            if bound is None:
                self.violations.append(f"GET {request.path}: {name}={q[name]!r} is not a date-time")
                return _error(400, "rest_invalid_param", f"Invalid parameter(s): {name}")
            posts = [p for p in posts if keep(datetime.fromisoformat(p["modified"]), bound)]
        if "exclude" in q:
            excluded = {int(i) for i in q["exclude"].split(",") if i}
            posts = [p for p in posts if p["id"] not in excluded]
        if "tags" in q:
            tag = int(q["tags"])
            posts = [p for p in posts if tag in p.get("tags", [])]
        descending = q.get("order", "desc") != "asc"
        if q.get("orderby") == "modified":
            # MariaDB orders rows of equal post_modified in no fixed way (ties with a LIMIT): so here.
            self._random.shuffle(posts)
            posts.sort(key=lambda p: p["modified"], reverse=descending)
        else:
            posts.sort(key=lambda p: p["id"], reverse=descending)
        page = int(q.get("page", "1"))
        pages = max(1, -(-len(posts) // per_page))
        if page > pages and posts:
            return _error(400, "rest_post_invalid_page_number", "The page number requested is larger than the number")
        chosen = posts[(page - 1) * per_page : page * per_page]
        headers = {"X-WP-Total": str(len(posts)), "X-WP-TotalPages": str(pages if posts else 0)}
        return web.json_response(chosen, headers=headers)

    async def _get(self, request: web.Request) -> web.Response:
        kind, post_id = request.match_info["kind"][:-1], int(request.match_info["id"])
        post = self.posts.get(post_id)
        if post is None or post["type"] != kind or not self._visible(request, post):
            return _error(404, "rest_post_invalid_id", "Invalid post ID.")
        if request.query.get("context") == "edit" and not request[AUTHENTICATED]:
            return _error(401, "rest_forbidden_context", "Sorry, you are not allowed to edit this post.")
        return web.json_response(post)

    async def _create_post(self, request: web.Request) -> web.Response:
        if not request[AUTHENTICATED]:
            return _error(401, "rest_cannot_create", "Sorry, you are not allowed to create posts as this user.")
        fields = json.loads(await request.read())
        if not str(fields.get("title") or "").strip() and not fields.get("content"):
            return _error(400, "empty_content", "Content, title, and excerpt are empty.")
        for tag in fields.get("tags", []):
            if tag not in self.terms["tags"]:
                return _error(400, "rest_invalid_param", "Invalid parameter(s): tags")
        post = self.put_post(
            fields.get("title", ""),
            fields.get("content", ""),
            status=fields.get("status", "draft"),
            tags=list(fields.get("tags", [])),
            categories=list(fields.get("categories", [1])),
        )
        if post["status"] != PUBLIC:
            post["link"] = f"{self._url}/?p={post['id']}"
        return web.json_response(post, status=201)

    async def _list_terms(self, request: web.Request) -> web.Response:
        q, taxonomy = request.query, request.match_info["taxonomy"]
        terms = list(self.terms[taxonomy].values())
        if "include" in q:
            wanted = {int(i) for i in q["include"].split(",") if i}
            terms = [t for t in terms if t["id"] in wanted]
        if "slug" in q:
            terms = [t for t in terms if t["slug"] in q["slug"].split(",")]
        if int(q.get("per_page", "10")) > PAGE_LIMIT:
            self.violations.append(f"GET {request.path}: per_page over {PAGE_LIMIT}")
        fields = q.get("_fields")
        if fields:
            terms = [{k: v for k, v in t.items() if k in fields.split(",")} for t in terms]
        return web.json_response(terms)

    async def _create_tag(self, request: web.Request) -> web.Response:
        if not request[AUTHENTICATED]:
            return _error(401, "rest_cannot_create", "Sorry, you are not allowed to create terms in this taxonomy.")
        fields = json.loads(await request.read())
        slug = str(fields.get("slug") or fields.get("name") or "")
        for term in self.terms["tags"].values():
            if term["slug"] == slug:
                return web.json_response(
                    {"code": "term_exists", "message": "A term with the name provided already exists.",
                     "data": {"status": 400, "term_id": term["id"]}},
                    status=400,
                )  # fmt: skip
        term_id = self.put_term("tags", str(fields.get("name") or slug))
        self.terms["tags"][term_id]["slug"] = slug
        return web.json_response(self.terms["tags"][term_id], status=201)


def _site_time(value: str) -> datetime | None:
    """A `modified_after`/`_before` as the site's local time (UTC here): with an offset it is
    converted, without one it is taken as local, as WordPress's WP_Date_Query does."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _term(term_id: int, name: str) -> dict[str, Any]:
    return {"id": term_id, "name": name, "slug": name.lower().replace(" ", "-"), "count": 0}


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message, "data": {"status": status}}, status=status)


def minutes_ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)
