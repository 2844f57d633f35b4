"""A small async client for WordPress's REST API (`/wp/v2`): the calls threadlink needs.

Auth is HTTP Basic with an application password. HTTP status becomes a ConnectorError in one
place (`connectors.errors.classify_response`: 401/403 fatal (AuthError), 429/5xx retriable, 404
NotFoundError), plus WordPress's own answers:

- a wrong application password is not refused by WordPress: the request goes on as an anonymous
  visitor, who may not ask for drafts, so the listing is a 400 `rest_invalid_param` whose
  details say `rest_forbidden_status` (401). That is an AuthError too, with the fix in its words;
- any other 400 (`rest_invalid_param`, `term_exists`, ...) is this one record's problem:
  skippable, with WordPress's error code.

Messages never carry the password, and never the body of an answer beyond WordPress's error code.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from connectors.errors import (
    AuthError,
    FatalError,
    NotFoundError,
    SkippableError,
    classify_transport_error,
    count_api_call,
    json_list,
    json_object,
)
from connectors.wordpress.config import PostType, WordPressConfig

log = logging.getLogger(__name__)

HINT = "is base_url (or api_root) a WordPress site with its REST API at /wp-json?"
AUTH_HINT = (
    "WordPress did not accept the application password (it treats a wrong one as an anonymous visitor); "
    "check username and app_password, and that the user may edit posts"
)
#: What the listing asks for: every status but auto-drafts (trash too, to learn of deletions).
LISTED_STATUSES = "publish,future,draft,pending,private,trash"
#: A thread's draft is looked for among these (a trashed one was thrown away by an editor).
DRAFT_STATUSES = "publish,future,draft,pending,private"
_ERROR_CODE = re.compile(r"^[a-z0-9_]{1,64}$")
WP_TIME_UTC = "%Y-%m-%dT%H:%M:%S+00:00"


class WordPressClient:
    """Lifecycle: built with the part using it; `aclose()` once when it stops. Safe to use from
    concurrent tasks on one event loop (one pooled httpx.AsyncClient)."""

    def __init__(self, config: WordPressConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(
            base_url=config.rest_root,
            auth=httpx.BasicAuth(config.username, config.app_password.get_secret_value()),
            headers={"Accept": "application/json"},
            timeout=httpx.Timeout(config.request_timeout_s),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def modified_after(
        self,
        kind: PostType,
        after: datetime,
        *,
        per_page: int,
        before: datetime | None = None,
        exclude: Sequence[int] = (),
        by_id: bool = False,
    ) -> list[Any]:
        """The first page of the posts (or pages) of every status modified after `after` (and
        before `before`), oldest change first (`by_id`: lowest id first), without `exclude`.
        The times go with their UTC offset: WordPress converts them to the site's time zone
        (with its daylight saving rules) before comparing with `post_modified`, its local time."""
        what = f"wordpress GET {kind}"
        params: dict[str, Any] = {
            "modified_after": after.astimezone(UTC).strftime(WP_TIME_UTC),
            "orderby": "id" if by_id else "modified",
            "order": "asc",
            "status": LISTED_STATUSES,
            "context": "edit",
            "per_page": per_page,
        }
        if before is not None:
            params["modified_before"] = before.astimezone(UTC).strftime(WP_TIME_UTC)
        if exclude:
            params["exclude"] = ",".join(map(str, exclude))
        return self._list(await self._send("GET", f"/wp/v2/{kind}", what, params=params), what)

    async def get(self, kind: PostType, post_id: str) -> dict[str, Any]:
        """One post or page (context=edit: drafts too). NotFoundError when there is none of that id."""
        what = f"wordpress GET {kind[:-1]}"
        if not post_id.isdigit() or len(post_id) > 20:
            raise NotFoundError(f"{what}: {post_id[:40]!r} is not a WordPress post id")
        return await self._object("GET", f"/wp/v2/{kind}/{post_id}", what, params={"context": "edit"})

    async def term_names(self, taxonomy: str, ids: Iterable[int]) -> dict[int, str]:
        """Names of up to 100 category or tag ids, in one call; none (logged) when the site will
        not say (404, a 400, not a list), but a refused credential or a retriable error is raised."""
        wanted = sorted(set(ids))[:100]
        if not wanted:
            return {}
        what = f"wordpress GET {taxonomy}"
        params = {"include": ",".join(map(str, wanted)), "per_page": 100, "_fields": "id,name"}
        response = await self._send("GET", f"/wp/v2/{taxonomy}", what, params=params)
        try:
            terms = self._list(response, what)
        except (SkippableError, FatalError) as exc:
            if isinstance(exc, AuthError):
                raise
            # No such taxonomy here (a plugin removed it) or an odd answer: names are a nicety,
            # never worth losing the post over.
            log.warning("%s: names left out (%s)", what, exc)
            return {}
        names: dict[int, str] = {}
        for term in terms:
            if isinstance(term, dict) and type(term.get("id")) is int and isinstance(term.get("name"), str):
                names[term["id"]] = term["name"][:200]
        return names

    async def tag_id(self, slug: str) -> int | None:
        what = "wordpress GET tags"
        response = await self._send("GET", "/wp/v2/tags", what, params={"slug": slug, "_fields": "id,slug"})
        for tag in self._list(response, what):
            if isinstance(tag, dict) and tag.get("slug") == slug and type(tag.get("id")) is int:
                return int(tag["id"])
        return None

    async def create_tag(self, name: str) -> int:
        """The id of a new tag named and slugged `name` (or of the one that exists already)."""
        what = "wordpress POST tags"
        response = await self._send("POST", "/wp/v2/tags", what, json={"name": name, "slug": name})
        if response.status_code == 400 and _code(response) == "term_exists":
            count_api_call(what, "400")
            term_id = _error_data(response).get("term_id")
            if type(term_id) is int:
                return term_id
        tag = self._checked(response, what)
        if type(tag.get("id")) is not int:
            raise SkippableError(f"{what}: answered without the new tag's id")
        return int(tag["id"])

    async def posts_tagged(self, tag: int) -> list[dict[str, Any]]:
        what = "wordpress GET posts"
        params = {"tags": tag, "status": DRAFT_STATUSES, "context": "edit", "orderby": "id", "order": "asc"}
        response = await self._send("GET", "/wp/v2/posts", what, params={**params, "per_page": 5})
        return [p for p in self._list(response, what) if isinstance(p, dict)]

    async def create_post(self, fields: dict[str, Any]) -> dict[str, Any]:
        what = "wordpress POST posts"
        response = await self._send("POST", "/wp/v2/posts", what, json=fields, params={"context": "edit"})
        post = self._checked(response, what)
        if type(post.get("id")) is not int:
            raise SkippableError(f"{what}: answered without the new post's id")
        return post

    async def current_user(self) -> dict[str, Any]:
        """The user the application password belongs to: a 401 when it is not accepted."""
        return await self._object("GET", "/wp/v2/users/me", "wordpress GET users/me", params={"_fields": "id,name"})

    # -- one place for status and shape --------------------------------------------------------

    async def _send(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise classify_transport_error(exc, what=what) from exc

    def _refused(self, response: httpx.Response, what: str) -> None:
        """WordPress's own 4xx answers, and redirects, before the generic table."""
        if 300 <= response.status_code < 400:
            count_api_call(what, str(response.status_code))
            raise FatalError(
                f"{what}: HTTP {response.status_code}, a redirect (to a login page?); {HINT}",
                status=response.status_code,
            )
        if response.status_code == 400:
            count_api_call(what, "400")
            if _forbidden_param(response):
                raise AuthError(f"{what}: {AUTH_HINT}", status=401)
            raise SkippableError(f"{what}: HTTP 400 ({_code(response) or 'no error code'})", status=400)
        if response.status_code in (401, 403):
            count_api_call(what, str(response.status_code))
            raise AuthError(f"{what}: HTTP {response.status_code}; {AUTH_HINT}", status=response.status_code)

    def _checked(self, response: httpx.Response, what: str) -> dict[str, Any]:
        self._refused(response, what)
        return json_object(response, what=what, hint=HINT)

    async def _object(self, method: str, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        return self._checked(await self._send(method, path, what, **kwargs), what)

    def _list(self, response: httpx.Response, what: str) -> list[Any]:
        self._refused(response, what)
        return json_list(response, what=what, hint=HINT)


def _error(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _code(response: httpx.Response) -> str | None:
    """WordPress's error code (`rest_invalid_param`), when it is one: never free text."""
    code = _error(response).get("code")
    return code if isinstance(code, str) and _ERROR_CODE.match(code) else None


def _error_data(response: httpx.Response) -> dict[str, Any]:
    data = _error(response).get("data")
    return data if isinstance(data, dict) else {}


def _forbidden_param(response: httpx.Response) -> bool:
    """A 400 because a parameter (status, context) is forbidden to who WordPress took us for."""
    details = _error_data(response).get("details")
    if _code(response) != "rest_invalid_param" or not isinstance(details, dict):
        return False
    return any(
        isinstance(d, dict) and d.get("code") in ("rest_forbidden_status", "rest_forbidden_context")
        for d in details.values()
    )
