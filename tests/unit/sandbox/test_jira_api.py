"""The sandbox Jira: auth, shapes, contract checking, webhooks, failure injection."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from sandbox.contracts import SpecsMissing, spec_file
from sandbox.contracts.jira import SPEC, ContractViolation, JiraContract, jira_contract
from sandbox.jira_api import NOT_FOUND_MESSAGE, FakeJira

pytestmark = pytest.mark.unit

EMAIL = "bot@example.com"
TOKEN = "sandbox-token"
SECRET = "sandbox-secret"
VALID_ADF = {
    "type": "doc",
    "version": 1,
    "content": [{"type": "paragraph", "content": [{"type": "text", "text": "hi"}]}],
}


def basic(email: str = EMAIL, token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{email}:{token}".encode()).decode()}


@pytest.fixture(scope="module")
def contract() -> JiraContract:
    try:
        spec_file(SPEC)
        return jira_contract()
    except SpecsMissing as exc:
        pytest.fail(str(exc), pytrace=False)


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records what it got and answers `statuses` in turn."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/webhooks/jira", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/webhooks/jira"

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def jira(contract: JiraContract) -> AsyncIterator[FakeJira]:
    async with FakeJira(email=EMAIL, api_token=TOKEN, webhook_secret=SECRET, contract=contract) as fake:
        yield fake


@pytest.fixture
async def http(jira: FakeJira) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=jira.url) as client:
        yield client


# -- auth and shapes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers", [{}, basic(token="wrong"), {"Authorization": "Basic !!!"}, {"Authorization": "Bearer x"}]
)
async def test_missing_or_wrong_credentials_are_401(
    jira: FakeJira, http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await http.get("/rest/api/3/myself", headers=headers)
    assert response.status_code == 401
    assert response.json()["errorMessages"]
    assert jira.requests[-1].authenticated is False
    assert jira.violations == []


async def test_myself_answers_a_spec_valid_user(jira: FakeJira, http: httpx.AsyncClient) -> None:
    response = await http.get("/rest/api/3/myself", headers=basic())
    assert response.status_code == 200
    assert response.json()["emailAddress"] == EMAIL
    assert response.json()["self"].startswith(jira.url)
    assert TOKEN not in json.dumps(jira.requests[-1].headers)  # credentials are redacted
    assert jira.violations == []


async def test_unknown_issue_is_jira_404(jira: FakeJira, http: httpx.AsyncClient) -> None:
    response = await http.get("/rest/api/3/issue/NOPE-1", headers=basic())
    assert response.status_code == 404
    assert response.json() == {"errorMessages": [NOT_FOUND_MESSAGE], "errors": {}}
    assert jira.violations == []


async def test_issue_is_an_issue_bean_with_the_requested_fields(jira: FakeJira, http: httpx.AsyncClient) -> None:
    created = await jira.put_issue("OPS-1", "Checkout is down", status="Done", assignee="Ada Lovelace", priority="High")
    full = (await http.get("/rest/api/3/issue/ops-1", headers=basic())).json()
    assert full == created
    assert full["key"] == "OPS-1"
    fields = full["fields"]
    assert fields["status"]["name"] == "Done"
    assert fields["status"]["statusCategory"]["key"] == "done"
    assert fields["assignee"]["displayName"] == "Ada Lovelace"
    assert fields["priority"]["name"] == "High"
    assert fields["project"]["key"] == "OPS"
    assert fields["updated"].endswith("+0000")

    by_id = await http.get(f"/rest/api/3/issue/{created['id']}", params={"fields": "summary,status"}, headers=basic())
    assert set(by_id.json()["fields"]) == {"summary", "status"}
    assert jira.violations == []


async def test_comment_is_stored_and_answered_as_a_spec_comment(jira: FakeJira, http: httpx.AsyncClient) -> None:
    await jira.put_issue("OPS-1", "Checkout is down")
    response = await http.post("/rest/api/3/issue/OPS-1/comment", json={"body": VALID_ADF}, headers=basic())
    assert response.status_code == 201
    comment = response.json()
    assert comment["body"] == VALID_ADF
    assert jira.comments("OPS-1") == [comment]
    assert jira.violations == []


async def test_comment_properties_are_kept_and_shown_when_expanded(jira: FakeJira, http: httpx.AsyncClient) -> None:
    await jira.put_issue("OPS-1", "Checkout is down")
    tag = {"key": "threadlink", "value": {"command_id": "add_comment-1"}}
    created = await http.post(
        "/rest/api/3/issue/OPS-1/comment", json={"body": VALID_ADF, "properties": [tag]}, headers=basic()
    )
    assert created.status_code == 201
    comment_id = created.json()["id"]
    assert "properties" not in created.json()  # like Jira: only when expanded
    assert jira.comment_properties(comment_id) == {"threadlink": {"command_id": "add_comment-1"}}

    listed = await http.get("/rest/api/3/issue/OPS-1/comment", params={"expand": "properties"}, headers=basic())
    assert listed.json()["comments"][0]["properties"] == [tag]
    plain = await http.get("/rest/api/3/issue/OPS-1/comment", headers=basic())
    assert "properties" not in plain.json()["comments"][0]
    keys = await http.get(f"/rest/api/3/comment/{comment_id}/properties", headers=basic())
    assert [k["key"] for k in keys.json()["keys"]] == ["threadlink"]
    one = await http.get(f"/rest/api/3/comment/{comment_id}/properties/threadlink", headers=basic())
    assert one.json() == tag
    missing = await http.get(f"/rest/api/3/comment/{comment_id}/properties/other", headers=basic())
    assert missing.status_code == 404
    by_id = await http.post(
        "/rest/api/3/comment/list", params={"expand": "properties"}, json={"ids": [int(comment_id)]}, headers=basic()
    )
    assert [c["properties"] for c in by_id.json()["values"]] == [[tag]]
    assert (await http.post("/rest/api/3/comment/list", json={"ids": []}, headers=basic())).status_code == 400
    jira.assert_no_violations()


async def test_the_listing_can_ignore_the_properties_expand(jira: FakeJira, http: httpx.AsyncClient) -> None:
    await jira.put_issue("OPS-1", "Checkout is down")
    tag = {"key": "threadlink", "value": {"command_id": "c1"}}
    await http.post("/rest/api/3/issue/OPS-1/comment", json={"body": VALID_ADF, "properties": [tag]}, headers=basic())
    jira.comment_list_expands_properties = False
    listed = await http.get("/rest/api/3/issue/OPS-1/comment", params={"expand": "properties"}, headers=basic())
    assert "properties" not in listed.json()["comments"][0]
    jira.assert_no_violations()


async def test_comments_are_listed_in_pages_oldest_or_newest_first(jira: FakeJira, http: httpx.AsyncClient) -> None:
    await jira.put_issue("OPS-1", "Checkout is down")
    jira.comments_page_limit = 2
    ids = []
    for _ in range(3):
        response = await http.post("/rest/api/3/issue/OPS-1/comment", json={"body": VALID_ADF}, headers=basic())
        ids.append(response.json()["id"])

    async def page(**params: Any) -> dict[str, Any]:
        return (await http.get("/rest/api/3/issue/OPS-1/comment", params=params, headers=basic())).json()

    first = await page(maxResults=50)
    assert (first["startAt"], first["maxResults"], first["total"]) == (0, 2, 3)
    assert [c["id"] for c in first["comments"]] == ids[:2]
    assert [c["id"] for c in (await page(startAt=2))["comments"]] == ids[2:]
    newest = await page(orderBy="-created", startAt=0, maxResults=2)
    assert [c["id"] for c in newest["comments"]] == [ids[2], ids[1]]
    jira.assert_no_violations()
    bad = await http.get("/rest/api/3/issue/OPS-1/comment", params={"orderBy": "author"}, headers=basic())
    assert bad.status_code == 400  # and a violation: the spec's enum is created, -created, +created
    assert [v.where for v in jira.violations] == ["request.query"]


@pytest.mark.parametrize(
    "properties", [[{"key": "threadlink"}], [{"key": "", "value": 1}], [{"key": "x" * 256, "value": 1}]]
)
async def test_malformed_comment_properties_are_refused(
    jira: FakeJira, http: httpx.AsyncClient, properties: list[dict[str, Any]]
) -> None:
    await jira.put_issue("OPS-1", "Checkout is down")
    response = await http.post(
        "/rest/api/3/issue/OPS-1/comment", json={"body": VALID_ADF, "properties": properties}, headers=basic()
    )
    assert response.status_code == 400
    assert jira.comments("OPS-1") == []


def test_the_validator_accepts_comment_properties_on_create_and_in_answers(contract: JiraContract) -> None:
    tag = {"key": "threadlink", "value": {"command_id": "c1"}}
    assert (
        contract.check_request("POST", "/rest/api/3/issue/OPS-1/comment", body={"body": VALID_ADF, "properties": [tag]})
        == []
    )
    [violation] = contract.check_request(
        "POST", "/rest/api/3/issue/OPS-1/comment", body={"body": VALID_ADF, "properties": [{**tag, "self": "x"}]}
    )
    assert violation.message.startswith("$.properties[0]:")
    query = [("startAt", "0"), ("maxResults", "100"), ("orderBy", "-created"), ("expand", "properties")]
    assert contract.check_request("GET", "/rest/api/3/issue/OPS-1/comment", query=query) == []
    page = {
        "startAt": 0,
        "maxResults": 1,
        "total": 1,
        "comments": [{"id": "1", "body": VALID_ADF, "properties": [tag]}],
    }
    assert contract.check_response("GET", "/rest/api/3/issue/OPS-1/comment", 200, page) == []


# -- contract checking --------------------------------------------------------------------


def test_the_validator_flags_an_invalid_comment_body(contract: JiraContract) -> None:
    violations = contract.check_request(
        "POST",
        "/rest/api/3/issue/OPS-1/comment",
        body={"body": "plain text is v2, not v3", "id": "123", "visibility": {"type": "everyone"}},
    )
    messages = [v.message for v in violations]
    assert {v.where for v in violations} == {"request.body"}
    assert any("Atlassian Document Format" in m for m in messages)
    assert any(m.startswith("$.id:") and "read-only" in m for m in messages)
    assert any(m.startswith("$.visibility.type:") for m in messages)


def test_the_validator_flags_bad_adf_nodes(contract: JiraContract) -> None:
    body = {
        "type": "doc",
        "version": 1,
        "content": [
            {
                "type": "paragraph",
                "content": [
                    {"type": "text", "text": ""},
                    {"type": "text", "text": "x", "marks": [{"type": "link", "attrs": {}}]},
                ],
            }
        ],
    }
    messages = [
        v.message for v in contract.check_request("POST", "/rest/api/3/issue/OPS-1/comment", body={"body": body})
    ]
    assert len(messages) == 2


def test_the_validator_checks_paths_methods_and_query(contract: JiraContract) -> None:
    assert contract.operation("GET", "/rest/api/3/issue/picker").operation_id == "getIssuePickerResource"
    assert [v.message for v in contract.check_request("GET", "/rest/api/3/nothing")] == ["no such path in the spec"]
    assert [v.message for v in contract.check_request("PATCH", "/rest/api/3/myself")] == ["no PATCH operation"]
    query = [("fields", "summary"), ("updateHistory", "maybe"), ("colour", "red")]
    messages = [v.message for v in contract.check_request("GET", "/rest/api/3/issue/OPS-1", query=query)]
    assert len(messages) == 2
    assert any("updateHistory" in m for m in messages)
    assert any("colour" in m for m in messages)
    assert contract.check_request("GET", "/rest/api/3/myself", body={"x": 1})[0].message.endswith("takes no body")


def test_the_validator_checks_responses(contract: JiraContract) -> None:
    bad_issue = {"id": "1", "key": "OPS-1", "fields": {}, "summary": "belongs in fields"}
    [violation] = contract.check_response("GET", "/rest/api/3/issue/OPS-1", 200, bad_issue)
    assert violation.where == "response.body"
    assert "summary" in violation.message
    assert contract.check_response("GET", "/rest/api/3/issue/OPS-1", 418, None)[0].where == "response.status"
    # nullable is honoured: Visibility.identifier may be null.
    comment = {"id": "1", "body": VALID_ADF, "visibility": {"type": "role", "value": "Admins", "identifier": None}}
    assert contract.check_response("POST", "/rest/api/3/issue/OPS-1/comment", 201, comment) == []


async def test_the_fake_records_violations_and_refuses_non_adf_bodies(jira: FakeJira, http: httpx.AsyncClient) -> None:
    await jira.put_issue("OPS-1", "Checkout is down")
    response = await http.post("/rest/api/3/issue/OPS-1/comment", json={"body": "plain"}, headers=basic())
    assert response.status_code == 400
    assert [v.where for v in jira.violations] == ["request.body"]
    assert jira.comments("OPS-1") == []
    with pytest.raises(ContractViolation, match="Atlassian Document Format"):
        jira.assert_no_violations()


async def test_strict_mode_answers_400_for_any_violation(contract: JiraContract) -> None:
    async with (
        FakeJira(email=EMAIL, api_token=TOKEN, webhook_secret=SECRET, contract=contract, strict=True) as jira,
        httpx.AsyncClient(base_url=jira.url) as http,
    ):
        response = await http.get("/rest/api/3/myself", params={"colour": "red"}, headers=basic())
    assert response.status_code == 400
    assert "colour" in response.json()["errorMessages"][0]


# -- failure injection --------------------------------------------------------------------


async def test_fail_next_answers_the_injected_status_once(jira: FakeJira, http: httpx.AsyncClient) -> None:
    jira.fail_next(429, retry_after=3)
    first = await http.get("/rest/api/3/myself", headers=basic())
    second = await http.get("/rest/api/3/myself", headers=basic())
    assert (first.status_code, first.headers["Retry-After"]) == (429, "3")
    assert second.status_code == 200


async def test_fail_next_after_store_does_the_work_then_answers_the_error(
    jira: FakeJira, http: httpx.AsyncClient
) -> None:
    await jira.put_issue("OPS-1", "Checkout is down")
    jira.fail_next(503, after_store=True, path_prefix="/rest/api/3/issue/OPS-1/comment")
    response = await http.post("/rest/api/3/issue/OPS-1/comment", json={"body": VALID_ADF}, headers=basic())
    assert response.status_code == 503
    assert len(jira.comments("OPS-1")) == 1
    assert jira.violations == []


@pytest.mark.parametrize("after_store", [True, False])
async def test_fail_next_with_a_delay_makes_the_client_time_out(
    jira: FakeJira, http: httpx.AsyncClient, after_store: bool
) -> None:
    await jira.put_issue("OPS-1", "Checkout is down")
    jira.fail_next(503, after_store=after_store, delay_s=30)
    with pytest.raises(httpx.ReadTimeout):
        await http.post("/rest/api/3/issue/OPS-1/comment", json={"body": VALID_ADF}, headers=basic(), timeout=0.1)
    assert len(jira.comments("OPS-1")) == (1 if after_store else 0)
    # The held-back answer does not hold up other calls, nor stop() (it goes out at once then).
    assert (await http.get("/rest/api/3/myself", headers=basic())).status_code == 200


# -- webhooks -----------------------------------------------------------------------------


def _verify(headers: dict[str, str], body: bytes) -> None:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature"] == expected


async def test_put_issue_sends_signed_created_then_updated_webhooks(contract: JiraContract, receiver: Receiver) -> None:
    async with FakeJira(
        email=EMAIL, api_token=TOKEN, webhook_secret=SECRET, webhook_url=receiver.url, contract=contract
    ) as jira:
        await jira.put_issue("OPS-1", "Checkout is down")
        await jira.put_issue("OPS-1", "Checkout is down", status="In Progress")
    (created_headers, created_body), (updated_headers, updated_body) = receiver.received
    for headers, body in receiver.received:
        _verify(headers, body)
        assert headers["X-Atlassian-Webhook-Identifier"]
    assert created_headers["X-Atlassian-Webhook-Identifier"] != updated_headers["X-Atlassian-Webhook-Identifier"]
    created, updated = json.loads(created_body), json.loads(updated_body)
    assert created["webhookEvent"] == "jira:issue_created"
    assert created["issue"]["key"] == "OPS-1"
    assert isinstance(created["timestamp"], int)
    assert updated["webhookEvent"] == "jira:issue_updated"
    assert updated["issue_event_type_name"] == "issue_generic"
    assert updated["changelog"]["items"][0]["fromString"] == "To Do"
    assert updated["changelog"]["items"][0]["toString"] == "In Progress"


async def test_a_failed_delivery_is_retried_with_the_same_identifier(
    contract: JiraContract, receiver: Receiver
) -> None:
    receiver.statuses = [500]
    async with FakeJira(
        email=EMAIL, api_token=TOKEN, webhook_secret=SECRET, webhook_url=receiver.url, contract=contract
    ) as jira:
        await jira.put_issue("OPS-1", "Checkout is down")
    (first, _), (second, _) = receiver.received
    assert first["X-Atlassian-Webhook-Identifier"] == second["X-Atlassian-Webhook-Identifier"]
    assert "X-Atlassian-Webhook-Retry" not in first
    assert second["X-Atlassian-Webhook-Retry"] == "1"
    assert [d.status for d in jira.deliveries] == [500, 200]


async def test_a_rest_comment_sends_comment_created_and_delete_sends_issue_deleted(
    contract: JiraContract, receiver: Receiver
) -> None:
    async with (
        FakeJira(
            email=EMAIL, api_token=TOKEN, webhook_secret=SECRET, webhook_url=receiver.url, contract=contract
        ) as jira,
        httpx.AsyncClient(base_url=jira.url) as http,
    ):
        await jira.put_issue("OPS-1", "Checkout is down")
        await http.post("/rest/api/3/issue/OPS-1/comment", json={"body": VALID_ADF}, headers=basic())
        await asyncio.wait_for(jira.wait_deliveries(), 5)
        await jira.delete_issue("OPS-1")
    events = [json.loads(body) for _, body in receiver.received]
    assert [e["webhookEvent"] for e in events] == ["jira:issue_created", "comment_created", "jira:issue_deleted"]
    assert events[1]["comment"]["body"] == "hi"  # webhooks carry the body as a string
    assert events[1]["issue"]["key"] == "OPS-1"
    assert jira.violations == []


# -- sandbox routes -----------------------------------------------------------------------


async def test_sandbox_routes_create_issues_and_list_comments(jira: FakeJira, http: httpx.AsyncClient) -> None:
    response = await http.post("/sandbox/issues", json={"key": "web-5", "summary": "Typo", "priority": "Low"})
    assert response.status_code == 201
    assert response.json()["key"] == "WEB-5"
    assert jira.issue("WEB-5")["fields"]["priority"]["name"] == "Low"
    await http.post("/rest/api/3/issue/WEB-5/comment", json={"body": VALID_ADF}, headers=basic())
    listed = await http.get("/sandbox/issues/WEB-5/comments")
    assert [c["body"] for c in listed.json()] == [VALID_ADF]
    assert (await http.get("/sandbox/issues/NOPE-1/comments")).status_code == 404
    assert (await http.post("/sandbox/issues", json={"key": "X-1"})).status_code == 400
    assert jira.violations == []


def test_missing_specs_fail_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("THREADLINK_SPECS_DIR", str(tmp_path))
    with pytest.raises(SpecsMissing, match="THREADLINK_SPECS_DIR"):
        spec_file(SPEC)
