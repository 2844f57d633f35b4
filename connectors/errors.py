"""The three kinds of failure a connector can have, and the one place HTTP status maps to them.

- RetriableError: try again later (429, 5xx, timeouts). Carries `retry_after` when the
  platform said how long to wait. The runtime's one retry policy retries only this kind.
- FatalError: retrying will not help (401, 403, other 4xx, bad config). The command goes
  to the dead-letter topic with the reason.
- SkippableError: this one record is bad; skip it (to the dead-letter topic) and go on.
"""

from __future__ import annotations

from typing import Any

import httpx


class ConnectorError(Exception):
    kind = "fatal"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetriableError(ConnectorError):
    kind = "retriable"

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class BackpressureError(RetriableError):
    """The target asks us to slow down (429, or a platform-specific 'rate limited' answer)."""


class FatalError(ConnectorError):
    kind = "fatal"


class SkippableError(ConnectorError):
    kind = "skippable"


class NotFoundError(SkippableError):
    """The record asked for does not exist (or the credentials may not see it)."""


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff


def classify_response(response: httpx.Response, *, what: str) -> None:
    """Raise the right ConnectorError for a non-2xx response; return for 2xx.

    `what` names the call for the message, e.g. "slack chat.postMessage". Response bodies
    are not included: they may echo tokens or personal data.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    message = f"{what}: HTTP {status}"
    if status == 429:
        raise BackpressureError(
            message, status=status, retry_after=parse_retry_after(response.headers.get("Retry-After"))
        )
    if status >= 500 or status == 408:
        raise RetriableError(message, status=status, retry_after=parse_retry_after(response.headers.get("Retry-After")))
    if status == 404:
        raise NotFoundError(message, status=status)
    raise FatalError(message, status=status)


def json_object(response: httpx.Response, *, what: str, hint: str) -> dict[str, Any]:
    """The JSON object of a 2xx answer; a ConnectorError for anything else. A 2xx that is not a
    JSON object is not the platform at all (a proxy's login page, a wrong base URL): `hint`
    says which setting to check."""
    classify_response(response, what=what)
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise FatalError(
            f"{what}: HTTP {response.status_code} but not a JSON object; {hint}", status=response.status_code
        )
    return payload


def classify_transport_error(exc: httpx.TransportError, *, what: str) -> RetriableError:
    """Timeouts and connection failures are worth another try."""
    return RetriableError(f"{what}: {type(exc).__name__}")
