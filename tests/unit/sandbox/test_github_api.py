"""FakeGitHub itself: GitHub's auth and version checks, its rate-limit headers and `Link`
pages, and that its contract check catches what GitHub's description does not allow (so the
connector tests that rely on it mean something)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from sandbox.contracts import SpecsMissing
from sandbox.contracts.github import ContractViolation, GitHubContract, github_contract
from sandbox.github_api import FakeGitHub, sign

pytestmark = pytest.mark.unit

TOKEN = "github_pat_fake_tests"
HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


@pytest.fixture(scope="module")
def contract() -> GitHubContract:
    try:
        return github_contract()
    except SpecsMissing as exc:
        pytest.skip(f"GitHub's spec is not here ({exc})")


@pytest.fixture
async def fake(contract: GitHubContract) -> AsyncIterator[FakeGitHub]:
    github = FakeGitHub(token=TOKEN, webhook_secret="s", contract=contract)
    await github.start()
    github.add_repo("acme/shop")
    yield github
    await github.stop()


def client(fake: FakeGitHub, token: str = TOKEN) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=fake.url, headers={**HEADERS, "Authorization": f"Bearer {token}"})


async def test_a_wrong_token_is_401_bad_credentials(fake: FakeGitHub) -> None:
    async with client(fake, "github_pat_wrong") as http:
        answer = await http.get("/repos/acme/shop/issues/1")
    assert answer.status_code == 401 and answer.json()["message"] == "Bad credentials"
    assert fake.requests[0].headers["Authorization"] == "Bearer <redacted>"


async def test_an_unknown_api_version_is_400(fake: FakeGitHub) -> None:
    async with client(fake) as http:
        answer = await http.get("/repos/acme/shop/issues/1", headers={"X-GitHub-Api-Version": "2020-01-01"})
    assert answer.status_code == 400


async def test_answers_carry_rate_limit_headers_and_an_injected_limit_says_when_it_resets(fake: FakeGitHub) -> None:
    await fake.put_issue("acme/shop", "One")
    fake.fail_next(403, rate_limit_reset_in=60)
    async with client(fake) as http:
        limited = await http.get("/repos/acme/shop/issues/1")
        served = await http.get("/repos/acme/shop/issues/1")
    assert limited.status_code == 403 and limited.headers["x-ratelimit-remaining"] == "0"
    assert int(limited.headers["x-ratelimit-reset"]) > 0
    assert served.status_code == 200 and int(served.headers["x-ratelimit-remaining"]) > 0


async def test_listings_are_paged_with_a_link_header(fake: FakeGitHub) -> None:
    for n in range(5):
        await fake.put_issue("acme/shop", f"Issue {n}")
    async with client(fake) as http:
        first = await http.get("/repos/acme/shop/issues", params={"per_page": "2", "state": "all"})
        last = await http.get(first.links["last"]["url"])
    assert [i["number"] for i in first.json()] == [5, 4]  # newest first, as GitHub's default
    assert "next" in first.links and "next" not in last.links and [i["number"] for i in last.json()] == [1]


async def test_requests_outside_the_description_are_violations(fake: FakeGitHub) -> None:
    async with client(fake) as http:
        await http.get("/repos/acme/shop/issues", params={"labelz": "x"})
        await http.post("/repos/acme/shop/issues", json={"body": "no title"})
        await http.get("/repos/acme/shop/issues/not-a-number")
    where = sorted({v.where for v in fake.violations})
    assert where == ["request.body", "request.path", "request.query"]
    with pytest.raises(ContractViolation):
        fake.assert_no_violations()


async def test_every_issue_and_comment_webhook_it_builds_matches_the_x_webhooks_schemas(fake: FakeGitHub) -> None:
    await fake.put_issue("acme/shop", "One", assignee="ada", labels=["bug"])
    comment = fake._store_comment("acme/shop", 1, "hi", "grace")
    for action in ("opened", "edited", "closed", "reopened", "labeled", "deleted", "transferred"):
        fake.signed("issues", fake.issue_event(action, "acme/shop", 1))
    for action in ("created", "edited", "deleted"):
        body, headers = fake.signed("issue_comment", fake.comment_event(action, "acme/shop", 1, comment))
        assert headers["X-Hub-Signature-256"] == sign("s", body)
    fake.assert_no_violations()


async def test_a_webhook_payload_the_schema_does_not_allow_is_caught(fake: FakeGitHub) -> None:
    await fake.put_issue("acme/shop", "One")
    payload = fake.issue_event("opened", "acme/shop", 1)
    del payload["issue"]["reactions"]
    fake.signed("issues", payload)
    assert any("reactions" in v.message for v in fake.violations)
