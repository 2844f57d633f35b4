"""Webhook routes with any method and path parameters (a Matrix application service's
`PUT /_matrix/app/v1/transactions/{txnId}`), verified on the raw body before parsing, several
routes per source; and the strict parser every source uses."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer

from connectors.base import (
    Unauthorized,
    WebhookRequest,
    WebhookResponse,
    WebhookRoute,
    WebhookSource,
    header_value,
)
from connectors.runtime.deadletter import safe_headers
from connectors.runtime.payloads import InvalidPayload, epoch_time, parse_json, parse_json_object
from connectors.runtime.webhooks import build_app

pytestmark = pytest.mark.unit

TOKEN = "hs-token-for-tests"


class Transactions(WebhookSource):
    routes = (
        WebhookRoute("PUT", "/_matrix/app/v1/transactions/{txnId}"),
        WebhookRoute("GET", "/_matrix/app/v1/users/{userId}"),
    )

    def __init__(self) -> None:
        self.verified: list[tuple[str, dict[str, str], bytes]] = []
        self.handled: list[Any] = []

    def verify(self, request: WebhookRequest) -> None:
        self.verified.append((request.method, dict(request.path_params), request.body))
        if header_value(request.headers, "Authorization") != f"Bearer {TOKEN}":
            raise Unauthorized("wrong hs_token")

    async def handle(self, request: WebhookRequest) -> WebhookResponse:
        if request.route.method == "GET":
            return WebhookResponse(json={}, outcome="ignored")
        self.handled.append((request.path_params["txnId"], parse_json_object(request.body, what="transaction")))
        return WebhookResponse(json={})


async def test_put_with_a_path_parameter_and_a_second_route() -> None:
    source = Transactions()
    server = TestServer(build_app([("routes-demo", source)]), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("/webhooks/routes-demo/_matrix/app/v1"))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            put = await client.put(f"{base}/transactions/42", content=b'{"events": []}', headers=auth)
            get = await client.get(f"{base}/users/@bot:example.org", headers=auth)
            post = await client.post(f"{base}/transactions/43", content=b"{}", headers=auth)
            unsigned = await client.put(f"{base}/transactions/44", content=b"{}")
            metrics = (await client.get(str(server.make_url("/metrics")))).text
    finally:
        await server.close()
    assert (put.status_code, get.status_code, post.status_code, unsigned.status_code) == (200, 200, 405, 401)
    assert source.verified[0] == ("PUT", {"txnId": "42"}, b'{"events": []}')  # the raw body, before parsing
    assert source.handled == [("42", {"events": []})]
    assert 'threadlink_connector_webhook_requests_total{connector="routes-demo",outcome="ignored"} 1.0' in metrics


def test_a_source_with_only_a_path_serves_post_on_it() -> None:
    class Legacy(WebhookSource):
        path = "/events"

        def verify(self, request: WebhookRequest) -> None: ...

        async def handle(self, request: WebhookRequest) -> WebhookResponse:
            return WebhookResponse()

    assert Legacy().routes == (WebhookRoute("POST", "/events"),)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "depth limit"),  # orjson stops at 1024 levels, without recursing
        (b"[" * 65 + b"]" * 65, "nests deeper"),
        (b'{"a": NaN}', "not JSON"),
        (b'{"a": Infinity}', "not JSON"),
        (b"1e400", "not JSON"),
        (b'"\\ud800"', "not JSON"),
        (b'{"a": "\xff"}', "not JSON"),
        (b'{"a": "\xed\xa0\x80"}', "not JSON"),  # a surrogate encoded as UTF-8 is invalid UTF-8
    ],
)
def test_the_strict_parser_refuses_what_can_never_be_understood(body: bytes, problem: str) -> None:
    with pytest.raises(InvalidPayload, match=problem):
        parse_json(body, what="body")


def test_the_strict_parser_reads_what_platforms_send() -> None:
    assert parse_json(b'{"text": "caf\xc3\xa9 \\ud83d\\ude00", "n": 1e300}', what="body") == {
        "text": "café 😀",
        "n": 1e300,
    }
    assert parse_json(b"[" * 64 + b"]" * 64, what="body") is not None


@pytest.mark.parametrize("value", [1e300, -1e300, math.nan, math.inf, "1e300", "nan", "soon", True, None, [1]])
def test_times_out_of_range_are_invalid_payloads(value: Any) -> None:
    with pytest.raises(InvalidPayload):
        epoch_time(value, what="event_time")


def test_times_in_range() -> None:
    assert epoch_time("1700000000.000100", what="ts").year == 2023
    assert epoch_time(1_709_288_430_456, what="timestamp", unit_s=0.001).year == 2024


def test_dead_lettered_requests_keep_no_credentials() -> None:
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Signature": "v0=abc",
        "X-Hub-Signature": "sha256=abc",
        "Authorization": "Bearer x",
        "Cookie": "s=1",
        "X-Api-Token": "t",
        "X-Slack-Retry-Num": "1",
    }
    assert safe_headers(headers) == {"Content-Type": "application/json", "X-Slack-Retry-Num": "1"}
