"""A small async client for GitHub's REST API (version 2022-11-28): the issue calls threadlink needs.

HTTP status becomes a ConnectorError in one place (`classify_github`, on top of
`connectors.errors.classify_response`), which knows GitHub's rate-limit answers: a primary limit
is a 403 (or 429) with `x-ratelimit-remaining: 0` and `x-ratelimit-reset` (epoch seconds); a
secondary limit is a 403 or 429 with `Retry-After`, or with the same headers. Both are
backpressure, retried by the runtime after the wait they name, never a refused credential.
https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api
Listings follow the `Link: <...>; rel="next"` header, only to the configured API, and for a
bounded number of items.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from connectors.errors import (
    BackpressureError,
    FatalError,
    SkippableError,
    classify_response,
    classify_transport_error,
    parse_retry_after,
)
from connectors.github.config import GitHubConfig
from connectors.github.mapping import IssueKey

API_VERSION = "2022-11-28"
MEDIA_TYPE = "application/vnd.github+json"
#: Items per page of a listing (GitHub's maximum).
PAGE_SIZE = 100


def classify_github(
    response: httpx.Response, *, what: str, max_wait_s: float = 3600, now: Callable[[], float] = time.time
) -> None:
    """Raise the right ConnectorError for a non-2xx GitHub answer; return for 2xx.

    - 403/429 with `Retry-After`, or with `x-ratelimit-remaining: 0`: BackpressureError, waiting
      `Retry-After` or until `x-ratelimit-reset` (at most `max_wait_s`);
    - 410 (issues turned off, an issue deleted) and 422 (validation failed): SkippableError;
    - any other 403: FatalError for this command (the token works, but not here), not AuthError;
    - the rest as `classify_response`: 404 NotFoundError, 401 AuthError (the sink pauses), 5xx/408
      retriable.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    headers = response.headers
    retry_after = parse_retry_after(headers.get("Retry-After"))
    exhausted = headers.get("x-ratelimit-remaining", "").strip() == "0"
    if status in (403, 429) and (retry_after is not None or exhausted):
        if retry_after is None:
            try:
                retry_after = max(0.0, float(headers.get("x-ratelimit-reset", "")) - now())
            except ValueError:
                retry_after = None
        wait = min(retry_after, max_wait_s) if retry_after is not None else None
        which = "secondary" if headers.get("Retry-After") else "primary"
        raise BackpressureError(f"{what}: HTTP {status} ({which} rate limit)", status=status, retry_after=wait)
    if status == 410:
        raise SkippableError(f"{what}: HTTP 410 (gone: deleted, or issues are turned off)", status=status)
    if status == 422:
        raise SkippableError(f"{what}: HTTP 422 (GitHub refused the request as invalid)", status=status)
    if status == 403:
        # Authenticated, but not allowed here: a repository outside the token's selection, a
        # missing Issues permission, a locked issue. The credential itself works (a revoked or
        # wrong one is a 401), so this command fails for good while the others go on.
        raise FatalError(
            f"{what}: HTTP 403 (the token may not do this here: check its repository access and its "
            "Issues: read and write permission)",
            status=status,
        )
    classify_response(response, what=what)


class GitHubClient:
    """Lifecycle: built with the connector; `aclose()` once when the sink stops. Safe to use
    from concurrent tasks on one event loop (one pooled httpx.AsyncClient).

    Redirects are followed: GitHub answers a transferred issue, or a renamed repository, with a
    301 to where it is now (httpx keeps the token only on the same origin)."""

    def __init__(
        self,
        config: GitHubConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._now = now
        self._api = urlsplit(config.api_url)
        self._http = httpx.AsyncClient(
            base_url=config.api_url,
            headers={
                "Authorization": f"Bearer {config.token.get_secret_value()}",
                "Accept": MEDIA_TYPE,
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "threadlink",
            },
            timeout=httpx.Timeout(config.request_timeout_s),
            follow_redirects=True,
            max_redirects=3,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    @staticmethod
    def _repo_path(owner: str, repo: str) -> str:
        return f"/repos/{quote(owner, safe='')}/{quote(repo, safe='')}"

    async def get_issue(self, key: IssueKey) -> dict[str, Any]:
        """The issue (or pull request) `key`. NotFoundError when it does not exist or the token
        may not see it (GitHub answers 404 for both); SkippableError for a 410."""
        path = f"{self._repo_path(key.owner, key.repo)}/issues/{key.number}"
        return self._object(await self._call("GET", path, "github GET issue"), "github GET issue")

    async def create_issue(self, owner: str, repo: str, body: Mapping[str, Any]) -> dict[str, Any]:
        what = "github POST issue"
        return self._object(
            await self._call("POST", f"{self._repo_path(owner, repo)}/issues", what, json=dict(body)), what
        )

    async def add_comment(self, key: IssueKey, body: str) -> dict[str, Any]:
        what = "github POST comment"
        path = f"{self._repo_path(key.owner, key.repo)}/issues/{key.number}/comments"
        return self._object(await self._call("POST", path, what, json={"body": body}), what)

    def issues(self, owner: str, repo: str, *, limit: int, **params: str) -> AsyncGenerator[dict[str, Any], None]:
        """Issues of a repository (`labels`, `state`, `sort`, `direction` as GitHub takes them),
        at most `limit`, following `Link` pages."""
        query = {"per_page": str(min(PAGE_SIZE, max(1, limit))), **params}
        return self._paged(f"{self._repo_path(owner, repo)}/issues", "github GET issues", query, limit)

    def comments(self, key: IssueKey, *, limit: int) -> AsyncGenerator[dict[str, Any], None]:
        """An issue's comments, oldest first (GitHub's only order), at most `limit`."""
        path = f"{self._repo_path(key.owner, key.repo)}/issues/{key.number}/comments"
        query = {"per_page": str(min(PAGE_SIZE, max(1, limit)))}
        return self._paged(path, "github GET comments", query, limit)

    async def _paged(
        self, path: str, what: str, params: Mapping[str, str], limit: int
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Items of a listing, page after page by the `Link` header's `next`. A `next` that leaves
        the configured API (another host or scheme) is not followed: the token goes nowhere else.
        Close the generator when leaving early (`contextlib.aclosing`)."""
        url: str | None = path
        query: Mapping[str, str] | None = params
        seen = 0
        pages = 0
        # Every page that goes on holds at least one item, so `limit` pages is a bound as well.
        while url is not None and seen < limit and pages < limit:
            response = await self._call("GET", url, what, params=query)
            pages += 1
            items = self._json(response, what)
            if not isinstance(items, list):
                raise FatalError(f"{what}: the answer is not a list; is api_url GitHub's REST API?")
            for item in items:
                if isinstance(item, dict) and seen < limit:
                    seen += 1
                    yield item
            if not items:
                return
            url, query = self._next_page(response), None

    def _next_page(self, response: httpx.Response) -> str | None:
        next_url = response.links.get("next", {}).get("url")
        if not next_url:
            return None
        parts = urlsplit(next_url)
        if (parts.scheme, parts.netloc) != (self._api.scheme, self._api.netloc):
            return None
        return next_url

    async def _call(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise classify_transport_error(exc, what=what) from exc
        except httpx.TooManyRedirects as exc:
            raise FatalError(f"{what}: too many redirects") from exc
        classify_github(response, what=what, max_wait_s=self._config.max_rate_limit_wait_s, now=self._now)
        return response

    @staticmethod
    def _json(response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise FatalError(
                f"{what}: HTTP {response.status_code} but not JSON; is api_url GitHub's REST API?",
                status=response.status_code,
            ) from None

    def _object(self, response: httpx.Response, what: str) -> dict[str, Any]:
        payload = self._json(response, what)
        if not isinstance(payload, dict):
            raise FatalError(f"{what}: HTTP {response.status_code} but not a JSON object", status=response.status_code)
        return payload
