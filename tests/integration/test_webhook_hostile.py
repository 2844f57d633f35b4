"""Hostile input against every route of every registered connector's webhooks, through the
runtime's real HTTP layer and the real broker: each case gets its clear 4xx (never a 5xx for a
permanent problem), nothing of it reaches Kafka, and the server still serves afterwards (a
correctly signed webhook right after it lands: the positive marker that Kafka was looked at)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer
from pydantic import BaseModel, ValidationError

from connectors.base import ConnectorContext, WebhookRequest, WebhookRoute, WebhookSource
from connectors.errors import SkippableError
from connectors.registry import plugin_for
from connectors.runtime.kafka import KafkaPublisher, PublishError
from connectors.runtime.webhooks import DeadLetters, HttpLimits, build_app, webhook_path
from schemas.deadletters import DeadLetter
from schemas.records import RecordEvent
from schemas.social import SocialMessage
from tests.integration.kafka_helpers import envelopes
from tests.unit.connectors.conformance.harness import ConnectorHarness
from tests.unit.connectors.conformance.harnesses import HARNESSES
from threadlink.config import Settings
from threadlink.topics_admin import apply_topics

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
READ_TIMEOUT_S = 1.0


def routes_of(harness: ConnectorHarness) -> list[WebhookRoute]:
    """The routes of the webhook source the harness's sample requests are for, read off a
    throw-away build (Slack's interactivity endpoint takes forms: its hostile cases are in
    tests/unit/connectors/slack/test_slack_interactivity.py)."""
    plugin = plugin_for(harness.kind)
    assert plugin is not None

    class NoPublisher:
        async def publish(self, *args: Any) -> None:
            raise AssertionError("not published: only the routes are read")

    # The config only needs to validate; nothing is started or called.
    config = plugin.config_model.model_validate(dict(harness.config(_Unstarted())))
    parts = plugin.build(config, ConnectorContext(harness.name, Settings().kafka.topics, NoPublisher()))
    return list(harness.webhook_of(parts).routes) if parts.webhooks else []


class _Unstarted:
    url = api_url = "http://127.0.0.1:9"


ROUTES = [
    pytest.param((harness, route), id=f"{harness.kind}-{route.method}{route.path or '/'}")
    for harness in HARNESSES
    for route in routes_of(harness)
]


def concrete(path: str, params: Mapping[str, str] | None = None) -> str:
    """A route path with its `{param}` (or `{param:regex}`) parts filled in: from `params` (a
    sample request's own, e.g. a Matrix transaction's txnId), else "1"."""
    given = params or {}
    return re.sub(r"\{([^}:]+)(?::[^}]*)?\}", lambda m: given.get(m.group(1), "1"), path)


@dataclass
class Served:
    harness: ConnectorHarness
    name: str
    route: WebhookRoute
    stand_in: Any
    source: WebhookSource
    server: TestServer
    settings: Settings
    good: int = 0
    """Correctly signed sample webhooks answered 2xx: exactly what may be on Kafka."""

    def url(self, route: WebhookRoute, params: Mapping[str, str] | None = None) -> str:
        return str(self.server.make_url(concrete(webhook_path(self.name, route), params)))

    async def send(self, route: WebhookRoute, request: WebhookRequest, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.request(
                route.method,
                self.url(route, request.path_params),
                content=kwargs.pop("content", request.body),
                headers=dict(request.headers),
            )

    async def signed_sample(self) -> WebhookRequest:
        return await self.harness.sample_webhook(self.stand_in)

    async def still_serves(self, route: WebhookRoute) -> None:
        """A good webhook lands after the hostile one: the server serves, and Kafka holds
        exactly the good ones."""
        response = await self.send(route, await self.signed_sample())
        assert response.status_code == 200, response.text
        self.good += 1
        assert await asyncio.to_thread(self.events_on_kafka) == self.good

    def events_on_kafka(self) -> int:
        kafka = self.settings.kafka
        found = [
            *envelopes(kafka.bootstrap_servers or "", kafka.topics.social_events, SocialMessage),
            *envelopes(kafka.bootstrap_servers or "", kafka.topics.records, RecordEvent),
        ]
        return sum(1 for envelope in found if envelope.source_system == self.name)


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str, namespace: str) -> Settings:
    settings = Settings(kafka={"bootstrap_servers": kafka_bootstrap, "namespace": f"{namespace}-hostile"})
    apply_topics(settings)
    return settings


@pytest.fixture
async def served(
    request: pytest.FixtureRequest, settings: Settings, kafka_bootstrap: str, vendor_specs: str
) -> AsyncIterator[Served]:
    harness, route = request.param
    # Its own connector name per test: the events on Kafka are this test's alone.
    # (a digest of the whole test id: a long route id would make the last characters the same for all)
    digest = hashlib.sha256(request.node.name.encode()).hexdigest()[:8]
    name = f"{harness.kind}-{re.sub(r'[^a-z0-9]', '', request.node.name.lower())[:30]}-{digest}"
    publisher = KafkaPublisher(kafka_bootstrap, client_id="tests-hostile")
    stand_in = await harness.start_stand_in()
    plugin = plugin_for(harness.kind)
    assert plugin is not None
    ctx = ConnectorContext(name, settings.kafka.topics, publisher.labelled(name))
    parts = plugin.build(plugin.config_model.model_validate(dict(harness.config(stand_in))), ctx)
    for source in parts.webhooks:
        await source.start()
    limits = HttpLimits(read_timeout_s=READ_TIMEOUT_S)
    app = build_app(
        [(name, source) for source in parts.webhooks],
        dead_letters=DeadLetters(publisher, settings.kafka.topics),
        limits=limits,
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield Served(harness, name, route, stand_in, harness.webhook_of(parts), server, settings)
    finally:
        await server.close()
        for source in parts.webhooks:
            await source.stop()
        await stand_in.stop()
        await asyncio.to_thread(publisher.close)


@pytest.fixture
def no_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert loud == [], [r.getMessage() for r in loud]


# -- the cases by name -------------------------------------------------------------------------


@pytest.mark.parametrize("served", ROUTES, indirect=True)
async def test_unsigned_10_mib_with_content_length_is_413(served: Served) -> None:
    route = served.route
    response = await served.send(route, WebhookRequest(headers={}, body=b"x" * (10 * MIB)))
    assert response.status_code == 413
    await served.still_serves(route)


@pytest.mark.parametrize("served", ROUTES, indirect=True)
async def test_signed_2_mib_body_is_413_not_a_retried_5xx(served: Served) -> None:
    route = served.route
    body = json.dumps({"type": "event_callback", "padding": "x" * (2 * MIB)}).encode()
    response = await served.send(route, served.harness.sign(body, headers={"Content-Type": "application/json"}))
    assert response.status_code == 413
    await served.still_serves(route)


@pytest.mark.parametrize("served", ROUTES, indirect=True)
async def test_oversized_chunked_body_without_content_length_is_413(served: Served) -> None:
    route = served.route

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):  # 2.5 MiB in all; the server stops reading at its limit
            yield b"y" * (64 * 1024)

    request = served.harness.sign(b"", headers={"Content-Type": "application/json"})
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.request(
            route.method, served.url(route), content=chunks(), headers=dict(request.headers)
        )
    assert response.status_code == 413
    assert "content-length" not in {k.lower() for k in response.request.headers}
    await served.still_serves(route)


def _sample_with(body: bytes, field: str, literal: str) -> bytes:
    """The sample's JSON with `field` set to a raw JSON literal (NaN and 1e300 are not Python's)."""
    doc = json.loads(body)
    doc[field] = "__LITERAL__"
    return json.dumps(doc).replace('"__LITERAL__"', literal).encode()


def _hostile_bodies(sample: bytes, harness: ConnectorHarness) -> dict[str, bytes]:
    text = sample.decode()
    bodies = {
        "nested-100k-deep": b"[" * 100_000 + b"]" * 100_000,
        "lone-surrogate": text.replace('"', '"\\ud800', 1).encode() if '"' in text else b'"\\ud800"',
        "invalid-utf8": sample.replace(b'"', b'"\xff\xfe', 1),
    }
    for field in harness.time_fields:
        bodies[f"{field}-nan"] = _sample_with(sample, field, "NaN")
        bodies[f"{field}-1e300"] = _sample_with(sample, field, "1e300")
    return bodies


@pytest.mark.parametrize("served", ROUTES, indirect=True)
async def test_signed_bodies_that_can_never_be_understood_are_400(served: Served) -> None:
    route = served.route
    sample = await served.signed_sample()
    for case, body in _hostile_bodies(sample.body, served.harness).items():
        response = await served.send(route, served.harness.sign(body, headers=sample.headers))
        assert response.status_code == 400, (case, response.status_code, response.text)
    await served.still_serves(route)


@pytest.mark.parametrize("served", ROUTES, indirect=True)
async def test_a_stalled_body_is_cut_off_with_408(served: Served, no_error_logs: None) -> None:
    route = served.route
    reader, writer = await asyncio.open_connection(served.server.host, served.server.port)
    path = concrete(webhook_path(served.name, route))
    writer.write(f"{route.method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{'z' * 10}".encode())
    await writer.drain()
    async with asyncio.timeout(30):  # READ_TIMEOUT_S, however slow the machine
        answer = await reader.read()  # to EOF: the server closes the connection
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    await served.still_serves(route)


@pytest.mark.parametrize("served", ROUTES, indirect=True)
async def test_a_client_that_disconnects_is_one_debug_line(
    served: Served, caplog: pytest.LogCaptureFixture, no_error_logs: None
) -> None:
    route = served.route
    _, writer = await asyncio.open_connection(served.server.host, served.server.port)
    path = concrete(webhook_path(served.name, route))
    writer.write(f"{route.method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{'z' * 10}".encode())
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    async with asyncio.timeout(30):
        while not any("went away" in r.getMessage() for r in caplog.records):
            await asyncio.sleep(0.02)
    gone = [r for r in caplog.records if "went away" in r.getMessage()]
    assert [r.levelno for r in gone] == [logging.DEBUG]
    await served.still_serves(route)


# -- what a connector raises ---------------------------------------------------------------------


class _Model(BaseModel):
    n: int


def _validation_error() -> ValidationError:
    try:
        _Model.model_validate({"n": "not a number"})
    except ValidationError as exc:
        return exc
    raise AssertionError("unreachable")


FAILURES = {
    "skippable": (lambda: SkippableError("bad record"), 400),
    "validation-error": (_validation_error, 400),
    "broker-away": (lambda: PublishError("broker did not acknowledge"), 503),
    "bug-in-the-mapping": (lambda: KeyError("fields"), 202),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
@pytest.mark.parametrize("served", ROUTES, indirect=True)
async def test_what_the_mapping_raises_decides_the_answer(
    served: Served, failure: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    route = served.route
    make, status = FAILURES[failure]

    async def broken(request: WebhookRequest) -> Any:
        raise make()

    monkeypatch.setattr(served.source, "handle", broken)
    sample = await served.signed_sample()
    response = await served.send(route, sample)
    assert response.status_code == status, response.text
    assert (response.status_code == 503) == ("Retry-After" in response.headers)
    monkeypatch.undo()
    await served.still_serves(route)
    if status != 202:
        return
    kafka = served.settings.kafka
    letters = [
        e.data
        for e in envelopes(kafka.bootstrap_servers or "", kafka.topics.dead_letters, DeadLetter)
        if e.data.consumer == f"webhook.{served.name}"
    ]
    assert len(letters) == 1 and "unexpected KeyError" in letters[0].reason
    stored = json.loads(letters[0].value)
    assert stored["body"].encode() == sample.body
    assert stored["headers"] and not [k for k in stored["headers"] if "signature" in k.lower()]  # no signatures kept
