"""The transactions endpoint's answers to a homeserver without, or with a wrong, hs_token, as the
application service API says: 401 M_UNAUTHORIZED and 403 M_FORBIDDEN, through the runtime's
webhook server."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient, TestServer

from connectors.base import ConnectorContext
from connectors.matrix.config import MatrixConfig
from connectors.matrix.source import MatrixTransactionsSource
from connectors.runtime.webhooks import build_app
from schemas.topics import TopicNames
from tests.unit.connectors.recording import RecordingPublisher

pytestmark = pytest.mark.unit

PATH = "/webhooks/matrix/_matrix/app/v1/transactions/7"
BODY = json.dumps({"events": []})


@pytest.mark.parametrize(
    ("headers", "status", "errcode"),
    [
        pytest.param({}, 401, "M_UNAUTHORIZED", id="no-token"),
        pytest.param({"Authorization": "Bearer not-it"}, 403, "M_FORBIDDEN", id="wrong-token"),
        pytest.param({"Authorization": "Bearer hs-secret"}, 200, None, id="right-token"),
    ],
)
async def test_the_hs_token_is_checked_as_the_spec_says(headers: dict[str, str], status: int, errcode: str) -> None:
    config = MatrixConfig(
        homeserver_url="http://127.0.0.1:9", server_name="localhost", as_token="a", hs_token="hs-secret"
    )
    publisher = RecordingPublisher()
    source = MatrixTransactionsSource(config, ConnectorContext("matrix", TopicNames(namespace="t"), publisher))
    async with TestClient(TestServer(build_app([("matrix", source)]))) as client:
        answer = await client.put(PATH, data=BODY, headers=headers)
        body = await answer.json()
    await source.stop()
    assert answer.status == status
    assert body.get("errcode") == errcode
    assert "hs-secret" not in json.dumps(body)
    assert publisher.attempts == 0
