"""FakeSlack on its own: Slack's auth and wire format, its contract checks, and event delivery
(signed, retried) to a small recording receiver."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web

from connectors.slack.source import verify_signature
from sandbox.contracts import SPECS_ENV, SpecsMissing, spec_file
from sandbox.contracts.slack import (
    EVENT_WRAPPER_SPEC,
    EVENTS_API_SPEC,
    WEB_API_SPEC,
    ContractViolation,
    SlackEventsContract,
    SlackWebApiContract,
)
from sandbox.slack_api import FakeSlack

pytestmark = pytest.mark.unit

SECRET = "sandbox-test-signing-secret"
TOKEN = "xoxb-sandbox-test-token"
CHANNEL = "C0GENERAL1"
TS = re.compile(r"^\d{10}\.\d{6}$")


@pytest.fixture(scope="module")
def slack_specs() -> None:
    """The Slack specs the fake checks against; a clear failure (never a silent pass) without them."""
    try:
        for relative in (WEB_API_SPEC, EVENT_WRAPPER_SPEC, EVENTS_API_SPEC):
            spec_file(relative)
    except SpecsMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@dataclass
class Receiver:
    """An Events API Request URL that records what it gets; answers `statuses` in turn (then 200)."""

    statuses: list[int] = field(default_factory=list)
    delay_s: float = 0.0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        if self.delay_s:
            delay, self.delay_s = self.delay_s, 0.0
            await asyncio.sleep(delay)
        body = json.loads(self.received[-1][1])
        if body.get("type") == "url_verification":
            return web.json_response({"challenge": body["challenge"]})
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _headers, body in self.received]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/events", receiver.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield receiver, f"http://127.0.0.1:{runner.addresses[0][1]}/events"
    await runner.cleanup()


@pytest.fixture
async def start_fake(slack_specs: None) -> AsyncIterator[Callable[..., Awaitable[FakeSlack]]]:
    started: list[FakeSlack] = []

    async def start(**overrides: Any) -> FakeSlack:
        values: dict[str, Any] = {"signing_secret": SECRET, "bot_token": TOKEN, "retry_delays_s": (0.0,)}
        fake = FakeSlack(**{**values, **overrides})
        started.append(fake)
        await fake.start()
        return fake

    yield start
    for fake in started:
        await fake.stop()


@pytest.fixture
async def fake(start_fake: Callable[..., Awaitable[FakeSlack]]) -> FakeSlack:
    return await start_fake()


async def api(fake: FakeSlack, method: str, token: str | None = TOKEN, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=fake.api_url + "/") as http:
        return await http.post(method, headers=headers, **kwargs)


# -- Web API -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "form", "error"),
    [(None, {}, "not_authed"), ("xoxb-wrong", {}, "invalid_auth"), (None, {"token": "xoxb-wrong"}, "invalid_auth")],
)
async def test_auth_errors_are_http_200_like_slack(fake: FakeSlack, token: str | None, form: dict, error: str) -> None:
    response = await api(fake, "auth.test", token=token, data=form)
    assert (response.status_code, response.json()) == (200, {"ok": False, "error": error})


async def test_auth_test_by_header_or_token_field(fake: FakeSlack) -> None:
    by_header = (await api(fake, "auth.test")).json()
    by_field = (await api(fake, "auth.test", token=None, data={"token": TOKEN})).json()
    assert by_header == by_field
    assert by_header["ok"] and (by_header["user_id"], by_header["bot_id"]) == (fake.bot_user_id, fake.bot_id)
    assert fake.violations == []


async def test_json_bodies_are_accepted_but_not_with_the_token_inside(fake: FakeSlack) -> None:
    fake.add_channel(CHANNEL)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]
    answer = (await api(fake, "chat.postMessage", json={"channel": CHANNEL, "text": "hi", "blocks": blocks})).json()
    assert answer["ok"] and answer["message"]["blocks"] == blocks
    no_header = await api(fake, "chat.postMessage", token=None, json={"token": TOKEN, "channel": CHANNEL, "text": "x"})
    assert no_header.json() == {"ok": False, "error": "not_authed"}
    assert fake.calls("chat.postMessage")[0].content_type == "application/json"


async def test_post_update_and_replies_answer_in_slacks_shape(fake: FakeSlack) -> None:
    root = await fake.post_user_message(CHANNEL, "root", user="U0ALICE")
    posted = (await api(fake, "chat.postMessage", data={"channel": CHANNEL, "text": "card", "thread_ts": root})).json()
    assert posted["ok"] and posted["channel"] == CHANNEL and TS.match(posted["ts"]) and posted["ts"] > root
    assert posted["message"]["thread_ts"] == root and posted["message"]["bot_id"] == fake.bot_id
    updated = (await api(fake, "chat.update", data={"channel": CHANNEL, "ts": posted["ts"], "text": "card v2"})).json()
    assert (updated["ok"], updated["ts"], updated["text"]) == (True, posted["ts"], "card v2")
    async with httpx.AsyncClient() as http:
        replies = (
            await http.get(
                f"{fake.api_url}/conversations.replies",
                params={"channel": CHANNEL, "ts": root},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
        ).json()
    assert [m["text"] for m in replies["messages"]] == ["root", "card v2"]
    assert replies["messages"][0]["reply_count"] == 1
    assert fake.thread(CHANNEL, root) == replies["messages"]
    assert fake.violations == []


async def test_replies_honour_oldest_latest_inclusive_and_limit(fake: FakeSlack) -> None:
    root = await fake.post_user_message(CHANNEL, "root")
    ts = [await fake.post_user_message(CHANNEL, f"reply {n}", thread_ts=root) for n in range(5)]

    async def texts(**params: str) -> tuple[list[str], bool]:
        async with httpx.AsyncClient() as http:
            answer = (
                await http.get(
                    f"{fake.api_url}/conversations.replies",
                    params={"channel": CHANNEL, "ts": root, **params},
                    headers={"Authorization": f"Bearer {TOKEN}"},
                )
            ).json()
        assert answer["ok"], answer
        return [m["text"] for m in answer["messages"]], answer["has_more"]

    # The root comes first whatever the range, as on Slack.
    assert await texts(oldest=ts[2]) == (["root", "reply 3", "reply 4"], False)
    assert await texts(oldest=ts[2], inclusive="true") == (["root", "reply 2", "reply 3", "reply 4"], False)
    assert await texts(latest=ts[1]) == (["root", "reply 0"], False)
    assert await texts(oldest=ts[0], latest=ts[3], inclusive="1") == (
        ["root", "reply 0", "reply 1", "reply 2", "reply 3"],
        False,
    )
    assert await texts(limit="3") == (["root", "reply 0", "reply 1"], True)
    assert await texts(oldest=ts[1], limit="3") == (["root", "reply 2", "reply 3"], True)
    assert await texts(oldest=ts[4]) == (["root"], False)
    assert fake.violations == []
    async with httpx.AsyncClient() as http:
        refused = await http.get(
            f"{fake.api_url}/conversations.replies",
            params={"channel": CHANNEL, "ts": root, "oldest": "yesterday"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert refused.json() == {"ok": False, "error": "invalid_ts_oldest"}


async def test_fake_answers_slack_errors(fake: FakeSlack) -> None:
    fake.add_channel(CHANNEL)
    cases = [
        ({"channel": "C0NOWHERE1", "text": "x"}, "channel_not_found"),
        ({"channel": CHANNEL}, "no_text"),
        ({"channel": CHANNEL, "text": "x", "blocks": "not json"}, "invalid_blocks"),
        ({"channel": CHANNEL, "text": "x" * 40_001}, "msg_too_long"),
    ]
    for form, error in cases:
        assert (await api(fake, "chat.postMessage", data=form)).json() == {"ok": False, "error": error}
    assert (await api(fake, "chat.update", data={"channel": CHANNEL, "ts": "1.1", "text": "x"})).json()["error"] == (
        "message_not_found"
    )


async def test_injected_rate_limit(fake: FakeSlack) -> None:
    fake.fail_next("auth.test", "ratelimited", status=429, retry_after=30)
    limited = await api(fake, "auth.test")
    assert (limited.status_code, limited.headers["Retry-After"], limited.json()["error"]) == (429, "30", "ratelimited")
    assert (await api(fake, "auth.test")).json()["ok"]


# -- contract checks -----------------------------------------------------------------------


async def test_contract_catches_a_bad_request(fake: FakeSlack) -> None:
    fake.add_channel(CHANNEL)
    await api(fake, "chat.postMessage", data={"text": "hi", "unfurl_links": "maybe", "thread_id": "1700000000.000100"})
    problems = sorted(v.problem for v in fake.violations)
    assert problems == [
        "parameter 'thread_id' is not one chat.postMessage declares",
        "parameter 'unfurl_links' should be boolean, got 'maybe'",
        "required parameter 'channel' is missing",
    ]
    assert {v.where for v in fake.violations} == {"request chat.postMessage"}
    with pytest.raises(ContractViolation, match="required parameter 'channel' is missing"):
        fake.assert_no_violations()


async def test_contract_catches_unknown_methods_and_content_types(fake: FakeSlack) -> None:
    assert (await api(fake, "chat.postMesage", data={"channel": CHANNEL})).json()["error"] == "unknown_method"
    await api(fake, "conversations.replies", json={"channel": CHANNEL, "ts": "1.1"})
    assert [str(v) for v in fake.violations] == [
        "request chat.postMesage: no such Web API method in the spec",
        "request conversations.replies: content type application/json not accepted "
        "(consumes ['application/x-www-form-urlencoded'])",
    ]


async def test_strict_mode_refuses_what_breaks_the_contract(start_fake: Callable[..., Awaitable[FakeSlack]]) -> None:
    fake = await start_fake(strict=True)
    fake.add_channel(CHANNEL)
    answer = (
        await api(fake, "chat.postMessage", data={"channel": CHANNEL, "text": "x", "blocks": '[{"text": 1}]'})
    ).json()
    assert answer["error"] == "invalid_arguments"
    assert answer["response_metadata"]["messages"] == ["0: 'type' is a required property"]
    assert fake.calls("chat.postMessage")[0].params["blocks"] == '[{"text": 1}]'


def test_response_and_event_checks_against_the_specs(slack_specs: None) -> None:
    web_api = SlackWebApiContract()
    good = {
        "ok": True,
        "channel": CHANNEL,
        "ts": "1700000000.000100",
        "message": {"type": "message", "text": "x", "ts": "1700000000.000100"},
    }
    assert web_api.check_response("chat.postMessage", good) == []
    bad = [str(v) for v in web_api.check_response("chat.postMessage", {**good, "ts": "12"})]
    assert bad == ["response chat.postMessage: ts: '12' does not match '^\\\\d{10}\\\\.\\\\d{6}$'"]
    assert web_api.check_response("chat.postMessage", {"ok": False, "error": "anything"}) == []

    events = SlackEventsContract()
    event = {"type": "message", "channel": CHANNEL, "channel_type": "channel", "event_ts": "1.2", "ts": "1.2"}
    payload = {
        "token": "t",
        "team_id": "T0001",
        "api_app_id": "A1",
        "event": event,
        "type": "event_callback",
        "event_id": "Ev1",
        "event_time": 1,
        "authed_users": ["U1"],
    }
    assert events.topic_of(payload) == "message.channels"
    assert events.check_event(payload) == []
    broken = {**payload, "event_time": "1", "event": {"type": "message", "channel_type": "channel"}}
    problems = {v.problem for v in events.check_event(broken)}
    assert "event_time: '1' is not of type 'integer'" in problems
    assert "event: 'event_ts' is a required property" in problems


def test_without_specs_the_fake_says_where_it_looked(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SPECS_ENV, str(tmp_path))
    with pytest.raises(SpecsMissing, match=r"slack/slack_web_openapi_v2\.json.*THREADLINK_SPECS_DIR"):
        FakeSlack()
    assert FakeSlack(check_contracts=False).web_contract is None  # a demo may run without them


# -- events --------------------------------------------------------------------------------


async def test_user_message_is_delivered_signed_and_in_slacks_shape(
    start_fake: Callable[..., Awaitable[FakeSlack]], receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    fake = await start_fake(events_url=url)
    root = await fake.post_user_message(CHANNEL, "root")
    ts = await fake.post_user_message(CHANNEL, "Is PROJ-1 back?", user="U0BOB", thread_ts=root, channel_type="channel")

    headers, body = got.received[-1]
    verify_signature(SECRET, headers, body, max_age_s=300)  # the connector's own check accepts it
    assert "X-Slack-Retry-Num" not in headers
    payload = json.loads(body)
    assert payload["type"] == "event_callback" and payload["event_id"].startswith("Ev")
    assert (payload["team_id"], payload["api_app_id"], payload["authed_users"]) == (
        fake.team_id,
        fake.app_id,
        [fake.bot_user_id],
    )
    assert isinstance(payload["event_time"], int) and payload["authorizations"][0]["is_bot"] is True
    event = payload["event"]
    assert {k: event[k] for k in ("type", "channel", "user", "text", "ts", "thread_ts", "channel_type")} == {
        "type": "message",
        "channel": CHANNEL,
        "user": "U0BOB",
        "text": "Is PROJ-1 back?",
        "ts": ts,
        "thread_ts": root,
        "channel_type": "channel",
    }
    assert len({p["event_id"] for p in got.payloads()}) == 2
    assert fake.violations == []


async def test_failed_deliveries_are_retried_three_times(
    start_fake: Callable[..., Awaitable[FakeSlack]], receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    got.statuses = [500, 503, 500, 500]
    fake = await start_fake(events_url=url)
    await fake.post_user_message(CHANNEL, "hello")
    retries = [(h.get("X-Slack-Retry-Num"), h.get("X-Slack-Retry-Reason")) for h, _ in got.received]
    assert retries == [(None, None), ("1", "http_error"), ("2", "http_error"), ("3", "http_error")]
    assert len({p["event_id"] for p in got.payloads()}) == 1
    assert [d.status for d in fake.deliveries] == [500, 503, 500, 500]


async def test_a_slow_answer_is_retried_as_http_timeout(
    start_fake: Callable[..., Awaitable[FakeSlack]], receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    got.delay_s = 0.3
    fake = await start_fake(events_url=url, event_timeout_s=0.1)
    await fake.post_user_message(CHANNEL, "hello")
    assert [(d.retry_num, d.status, d.reason) for d in fake.deliveries] == [(0, None, "http_timeout"), (1, 200, None)]
    assert got.received[-1][0]["X-Slack-Retry-Reason"] == "http_timeout"


async def test_redeliver_sends_the_same_event_as_a_retry(
    start_fake: Callable[..., Awaitable[FakeSlack]], receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    fake = await start_fake(events_url=url)
    await fake.post_user_message(CHANNEL, "hello")
    event_id = fake.events[-1]["event_id"]
    assert await fake.redeliver(event_id) == 200
    (first, retry) = got.received
    assert json.loads(first[1]) == json.loads(retry[1])
    assert (retry[0]["X-Slack-Retry-Num"], retry[0]["X-Slack-Retry-Reason"]) == ("1", "http_timeout")


async def test_the_bots_posts_and_edits_come_back_as_events(
    start_fake: Callable[..., Awaitable[FakeSlack]], receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    fake = await start_fake(events_url=url)
    root = await fake.post_user_message(CHANNEL, "root")
    posted = (await api(fake, "chat.postMessage", data={"channel": CHANNEL, "text": "card", "thread_ts": root})).json()
    await api(fake, "chat.update", data={"channel": CHANNEL, "ts": posted["ts"], "text": "card v2"})
    await fake.edit_user_message(CHANNEL, root, "root, edited")
    await fake.delete_user_message(CHANNEL, root)
    await fake.wait_for_deliveries()

    events = [p["event"] for p in got.payloads()]
    echo = next(e for e in events if e.get("ts") == posted["ts"] and "subtype" not in e)
    assert (echo["bot_id"], echo["app_id"], echo["user"], echo["thread_ts"]) == (
        fake.bot_id,
        fake.app_id,
        fake.bot_user_id,
        root,
    )
    changed = [e for e in events if e.get("subtype") == "message_changed"]
    assert {(e["message"]["ts"], e["message"]["text"]) for e in changed} == {
        (posted["ts"], "card v2"),
        (root, "root, edited"),
    }
    (deleted,) = [e for e in events if e.get("subtype") == "message_deleted"]
    assert (deleted["deleted_ts"], deleted["previous_message"]["text"]) == (root, "root, edited")
    assert fake.violations == []


async def test_sandbox_routes_drive_it_over_http(
    start_fake: Callable[..., Awaitable[FakeSlack]], receiver: tuple[Receiver, str]
) -> None:
    got, url = receiver
    fake = await start_fake(events_url=url)
    assert await fake.verify_events_url()
    async with httpx.AsyncClient(base_url=fake.url) as http:
        posted = (await http.post("/sandbox/post_message", json={"channel": CHANNEL, "text": "see PROJ-1"})).json()
        reply = {"channel": CHANNEL, "text": "and PROJ-2", "user": "U0BOB", "thread_ts": posted["ts"]}
        await http.post("/sandbox/post_message", json=reply)
        thread = (await http.get("/sandbox/thread", params={"channel": CHANNEL, "ts": posted["ts"]})).json()
        missing = await http.get("/sandbox/thread", params={"channel": CHANNEL, "ts": "1.1"})
        bad = await http.post("/sandbox/post_message", json={"text": "no channel"})
        violations = (await http.get("/sandbox/violations")).json()
    assert posted["ok"] and TS.match(posted["ts"])
    assert [(m["user"], m["text"]) for m in thread["messages"]] == [("U0001", "see PROJ-1"), ("U0BOB", "and PROJ-2")]
    assert (missing.status_code, bad.status_code) == (404, 400)
    assert violations == {"violations": []}
    assert len(got.received) == 3  # the url_verification and the two messages
