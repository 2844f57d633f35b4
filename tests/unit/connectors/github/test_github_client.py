"""GitHub's answers as the three kinds of failure (rate limits are backpressure, not a refused
credential), and listings paged by the `Link` header, bounded, never followed off the API."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import aclosing
from typing import Any

import httpx
import pytest

from connectors.errors import AuthError, BackpressureError, FatalError, NotFoundError, RetriableError, SkippableError
from connectors.github.client import GitHubClient, classify_github
from connectors.github.config import GitHubConfig
from connectors.github.mapping import IssueKey
from sandbox.github_api import FakeGitHub

from .conftest import TOKEN

pytestmark = pytest.mark.unit

NOW = 1_700_000_000.0


def answer(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, headers=headers, json={"message": "x"}, request=httpx.Request("GET", "https://api.github.com/x")
    )


def classify(response: httpx.Response, **kwargs: Any) -> None:
    classify_github(response, what="github GET issue", now=lambda: NOW, **kwargs)


def test_primary_rate_limit_403_with_remaining_zero_is_backpressure_until_the_reset() -> None:
    with pytest.raises(BackpressureError) as caught:
        classify(answer(403, **{"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 120)}))
    assert caught.value.retry_after == 120 and "primary" in str(caught.value)


def test_secondary_rate_limit_403_with_retry_after_is_backpressure() -> None:
    with pytest.raises(BackpressureError) as caught:
        classify(answer(403, **{"Retry-After": "60", "x-ratelimit-remaining": "4000"}))
    assert caught.value.retry_after == 60 and "secondary" in str(caught.value)


def test_429_with_remaining_zero_waits_for_the_reset() -> None:
    with pytest.raises(BackpressureError) as caught:
        classify(answer(429, **{"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 5)}))
    assert caught.value.retry_after == 5


def test_rate_limit_wait_is_capped_and_never_negative() -> None:
    with pytest.raises(BackpressureError) as far:
        classify(
            answer(403, **{"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 10**9)}), max_wait_s=600
        )
    with pytest.raises(BackpressureError) as past:
        classify(answer(403, **{"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) - 50)}))
    assert (far.value.retry_after, past.value.retry_after) == (600, 0)


def test_rate_limit_with_a_garbage_reset_is_still_backpressure() -> None:
    with pytest.raises(BackpressureError) as caught:
        classify(answer(403, **{"x-ratelimit-remaining": "0", "x-ratelimit-reset": "soon"}))
    assert caught.value.retry_after is None  # the runtime's own backoff


def test_403_without_rate_limit_headers_fails_the_command_but_does_not_pause_the_sink() -> None:
    # A repository outside a fine-grained token's selection answers 403 to a write: the token
    # works everywhere else, so this is no refused credential (which would stop every command).
    with pytest.raises(FatalError) as caught:
        classify(answer(403, **{"x-ratelimit-remaining": "4999"}))
    assert not isinstance(caught.value, AuthError) and "repository access" in str(caught.value)


def test_401_is_a_refused_credential() -> None:
    with pytest.raises(AuthError):
        classify(answer(401))


@pytest.mark.parametrize(("status", "kind"), [(404, NotFoundError), (410, SkippableError), (422, SkippableError)])
def test_permanent_answers_are_skippable_with_reasons(status: int, kind: type[Exception]) -> None:
    with pytest.raises(kind) as caught:
        classify(answer(status))
    assert f"HTTP {status}" in str(caught.value)


@pytest.mark.parametrize("status", [500, 502, 503, 408])
def test_server_errors_are_retriable(status: int) -> None:
    with pytest.raises(RetriableError):
        classify(answer(status))


def test_400_is_fatal() -> None:
    with pytest.raises(FatalError):
        classify(answer(400))


def test_2xx_passes() -> None:
    classify(answer(200))


# -- pagination -------------------------------------------------------------------------------


async def test_listing_follows_link_pages_to_the_end(
    fake_github: FakeGitHub, make_config: Callable[..., GitHubConfig]
) -> None:
    for n in range(7):
        await fake_github.put_issue("acme/shop", f"Issue {n}")
    fake_github.page_limit = 3
    client = GitHubClient(make_config(fake_github.url))
    try:
        numbers = [
            i["number"]
            async for i in client.issues("acme", "shop", limit=100, state="all", sort="created", direction="asc")
        ]
    finally:
        await client.aclose()
    assert numbers == [1, 2, 3, 4, 5, 6, 7]
    pages = [r for r in fake_github.requests if r.path == "/repos/acme/shop/issues"]
    assert len(pages) == 3 and all(r.headers.get("X-GitHub-Api-Version") == "2022-11-28" for r in pages)


async def test_listing_stops_at_its_limit(fake_github: FakeGitHub, make_config: Callable[..., GitHubConfig]) -> None:
    for n in range(7):
        await fake_github.put_issue("acme/shop", f"Issue {n}")
    fake_github.page_limit = 2
    client = GitHubClient(make_config(fake_github.url))
    try:
        async with aclosing(client.issues("acme", "shop", limit=3, state="all")) as issues:
            got = [i async for i in issues]
    finally:
        await client.aclose()
    assert len(got) == 3 and len(fake_github.requests) == 2


async def test_comments_are_listed_across_pages(
    fake_github: FakeGitHub, make_config: Callable[..., GitHubConfig]
) -> None:
    await fake_github.put_issue("acme/shop", "Busy issue")
    for n in range(5):
        fake_github._store_comment("acme/shop", 1, f"comment {n}", "grace")
    fake_github.page_limit = 2
    client = GitHubClient(make_config(fake_github.url))
    try:
        bodies = [c["body"] async for c in client.comments(IssueKey("acme", "shop", 1), limit=100)]
    finally:
        await client.aclose()
    assert bodies == [f"comment {n}" for n in range(5)]


async def test_a_next_link_to_another_host_is_not_followed_with_the_token(
    make_config: Callable[..., GitHubConfig],
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json=[{"number": 1}], headers={"Link": '<https://evil.example/steal?page=2>; rel="next"'}
        )

    client = GitHubClient(make_config(), transport=httpx.MockTransport(handler))
    try:
        got = [i async for i in client.issues("acme", "shop", limit=50)]
    finally:
        await client.aclose()
    assert got == [{"number": 1}] and [r.url.host for r in seen] == ["api.github.com"]


async def test_a_listing_that_is_not_a_list_is_fatal(make_config: Callable[..., GitHubConfig]) -> None:
    client = GitHubClient(make_config(), transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"a": 1})))
    try:
        with pytest.raises(FatalError, match="not a list"):
            _ = [i async for i in client.issues("acme", "shop", limit=5)]
    finally:
        await client.aclose()


async def test_requests_carry_bearer_token_media_type_and_api_version(make_config: Callable[..., GitHubConfig]) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404, json={"message": "Not Found"})

    client = GitHubClient(make_config(), transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(NotFoundError) as caught:
            await client.get_issue(IssueKey("acme", "shop", 9))
    finally:
        await client.aclose()
    (request,) = seen
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept"] == "application/vnd.github+json"
    assert request.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert TOKEN not in str(caught.value)
