"""connectors.errors: whether a failed call may nevertheless have been carried out, decided once
for every connector (Slack adds its own answers on top, in its client)."""

from __future__ import annotations

import contextlib

import httpx
import pytest

from connectors.errors import (
    NEVER_SENT,
    BackpressureError,
    ConnectorError,
    FatalError,
    NotFoundError,
    RetriableError,
    SkippableError,
    classify_response,
    classify_transport_error,
    outcome_unknown,
)

pytestmark = pytest.mark.unit


def _transport(kind: type[httpx.TransportError]) -> RetriableError:
    cause = kind("boom", request=httpx.Request("POST", "https://platform.example/api/post"))
    try:
        raise classify_transport_error(cause, what="platform POST") from cause
    except RetriableError as error:
        return error


def _answered(status: int) -> ConnectorError:
    try:
        classify_response(httpx.Response(status), what="platform POST")
    except ConnectorError as error:
        return error
    raise AssertionError(f"HTTP {status} is no error")


@pytest.mark.parametrize(
    ("error", "unknown"),
    [
        (_answered(500), True),
        (_answered(502), True),
        (_answered(503), True),
        (_answered(408), False),
        (_answered(429), False),
        (_answered(400), False),
        (_answered(401), False),
        (_answered(403), False),
        (_answered(404), False),
        (_transport(httpx.ReadTimeout), True),
        (_transport(httpx.WriteTimeout), True),
        (_transport(httpx.ReadError), True),
        (_transport(httpx.WriteError), True),
        (_transport(httpx.RemoteProtocolError), True),
        (_transport(httpx.ConnectError), False),
        (_transport(httpx.ConnectTimeout), False),
        (_transport(httpx.PoolTimeout), False),
        (RetriableError("platform POST: retriable, no status"), True),
        (BackpressureError("platform POST: rate limited", status=200), False),
        (FatalError("platform POST: refused", status=200), False),
        (SkippableError("platform POST: bad record"), False),
    ],
    ids=lambda value: str(value).split(": ", 1)[-1].replace(" ", "-") if isinstance(value, Exception) else None,
)
def test_outcome_unknown_is_a_5xx_or_a_transport_failure_after_sending(error: ConnectorError, unknown: bool) -> None:
    assert outcome_unknown(error) is unknown


@pytest.mark.parametrize(
    "kind",
    [httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.RemoteProtocolError, *NEVER_SENT],
)
def test_a_transport_error_keeps_whether_the_request_could_have_left(kind: type[httpx.TransportError]) -> None:
    error = _transport(kind)
    assert type(error) is RetriableError and error.status is None
    assert error.sent is (kind not in NEVER_SENT)
    assert str(error) == f"platform POST: {kind.__name__}"


def test_an_answer_was_sent() -> None:
    assert _answered(503).sent is True
    assert isinstance(_answered(404), NotFoundError)


def _api_calls(platform: str, method: str, status: str) -> float:
    from prometheus_client import REGISTRY

    labels = {"platform": platform, "method": method, "status": status}
    return REGISTRY.get_sample_value("threadlink_connector_api_requests_total", labels) or 0.0


@pytest.mark.parametrize("status", [200, 204, 401, 404, 429, 503])
def test_every_classified_answer_is_counted_by_platform_method_and_status(status: int) -> None:
    before = _api_calls("metricsplatform", "chat.postMessage", str(status))
    with contextlib.suppress(ConnectorError):
        classify_response(httpx.Response(status), what="metricsplatform chat.postMessage")
    assert _api_calls("metricsplatform", "chat.postMessage", str(status)) == before + 1


def test_a_call_without_an_answer_is_counted_as_a_transport_error() -> None:
    before = _api_calls("platform", "POST", "transport_error")
    _transport(httpx.ReadTimeout)
    assert _api_calls("platform", "POST", "transport_error") == before + 1
