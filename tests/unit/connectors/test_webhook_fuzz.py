"""Property-based hostile input (hypothesis) against every route of every registered connector,
through the runtime's real HTTP layer: whatever the body and headers, signed or not, the answer
is never a 5xx, never a dead letter (a 202 means the mapping raised something unexpected: a bug
to fix in the connector), and a refused request publishes nothing. The broker is a recording
publisher here; tests/integration/test_webhook_hostile.py does the named cases on the real one."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import WebhookRoute
from connectors.runtime.webhooks import DeadLetters, HttpLimits, build_app, webhook_path
from tests.integration.sandbox_deployment import LoopThread
from tests.unit.connectors.conformance.harness import ConnectorHarness, Running
from tests.unit.connectors.conformance.harnesses import HARNESSES

pytestmark = pytest.mark.unit

ALLOWED = {200, 400, 401, 413}


@dataclass
class Endpoint:
    harness: ConnectorHarness
    running: Running
    route: WebhookRoute
    url: str
    sample: dict[str, Any]


@pytest.fixture(scope="module")
def endpoints(vendor_specs: str) -> Iterator[list[Endpoint]]:
    loop = LoopThread()
    opened: list[AbstractAsyncContextManager[Running]] = []
    servers: list[TestServer] = []
    found: list[Endpoint] = []
    try:
        for harness in HARNESSES:
            context = harness.running()
            running = loop.run(context.__aenter__())
            opened.append(context)
            sources = [(harness.name, source) for source in running.parts.webhooks]
            if not sources:
                # Nothing to fuzz (MQTT, OPC UA, Redmine, WordPress). Asking for its sample would skip the whole
                # module fixture, and with it every connector's endpoints.
                continue
            app = build_app(
                sources, dead_letters=DeadLetters(running.publisher, running.ctx.topics), limits=HttpLimits()
            )
            server = TestServer(app, host="127.0.0.1")
            loop.run(server.start_server())
            servers.append(server)
            sample = json.loads(loop.run(running.sample_webhook()).body)
            running.publisher.published.clear()
            for _, source in sources:
                for route in source.routes:
                    path = re.sub(r"\{[^}]+\}", "1", webhook_path(harness.name, route))
                    found.append(Endpoint(harness, running, route, str(server.make_url(path)), sample))
        yield found
    finally:
        for server in servers:
            loop.run(server.close())
        for context in reversed(opened):
            loop.run(context.__aexit__(None, None, None))
        loop.stop()
        loop.loop.close()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)

HEADER_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=20).filter(
    lambda name: name.strip("-") and name not in {"content-length", "transfer-encoding", "host", "content-encoding"}
)
HEADER_VALUE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).filter(
    lambda value: value == value.strip()  # what an HTTP client can send at all
)


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in the sample's JSON where a value can be swapped."""
    found = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += paths(value, (*prefix, index))
    return found


def swapped(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    copy = json.loads(json.dumps(doc))
    node = copy
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return copy


@st.composite
def bodies(draw: st.DrawFn, sample: dict[str, Any]) -> bytes:
    kind = draw(st.sampled_from(["binary", "json", "sample-with-a-swapped-value"]))
    if kind == "binary":
        return draw(st.binary(max_size=2048))
    if kind == "json":
        return json.dumps(draw(JSON)).encode()
    path = draw(st.sampled_from(paths(sample)))
    return json.dumps(swapped(sample, path, draw(JSON))).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_body_or_header_gets_a_5xx_or_publishes_when_refused(endpoints: list[Endpoint], data: st.DataObject) -> None:
    endpoint = data.draw(st.sampled_from(endpoints))
    body = data.draw(bodies(endpoint.sample))
    headers = data.draw(st.dictionaries(HEADER_NAME, HEADER_VALUE, max_size=5))
    if data.draw(st.booleans()):
        headers = dict(endpoint.harness.sign(body, headers=headers).headers)
    published = len(endpoint.running.publisher.published)
    response = httpx.request(endpoint.route.method, endpoint.url, content=body, headers=headers, timeout=30)
    assert response.status_code in ALLOWED, (response.status_code, response.text, body[:200])
    if response.status_code >= 400:
        assert len(endpoint.running.publisher.published) == published
