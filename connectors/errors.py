"""The three kinds of failure a connector can have, and the one place HTTP status maps to them.

- RetriableError: try again later (429, 5xx, timeouts). Carries `retry_after` when the
  platform said how long to wait. The runtime's one retry policy retries only this kind.
- FatalError: retrying will not help (401, 403, other 4xx, bad config). The command goes
  to the dead-letter topic with the reason.
- SkippableError: this one record is bad; skip it (to the dead-letter topic) and go on.
- AuthError (a FatalError): the credential itself is refused (401/403, a revoked token). Not the
  command's fault: the sink runtime stops intake and waits for the credential to work again.

Whether a failed call may nevertheless have been carried out (so that doing it again could do it
twice) is decided here too: `outcome_unknown`.
"""

from __future__ import annotations

from typing import Any

import httpx

from connectors.runtime.metrics import API_CALLS


class ConnectorError(Exception):
    kind = "fatal"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetriableError(ConnectorError):
    kind = "retriable"

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None, sent: bool = True
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after
        self.sent = sent
        """False only when the request certainly never left (`classify_transport_error` of a
        connection that could not be had): the platform cannot have acted on it."""


class BackpressureError(RetriableError):
    """The target asks us to slow down (429, or a platform-specific 'rate limited' answer)."""


class FatalError(ConnectorError):
    kind = "fatal"


class AuthError(FatalError):
    """The platform refuses our credential (401, 403, a revoked or invalid token)."""


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


def count_api_call(what: str, status: str) -> None:
    """`what` is "<platform> <API method>" ("slack chat.postMessage", "jira GET issue"): fixed
    strings of the clients, so the labels stay bounded."""
    platform, _, method = what.partition(" ")
    API_CALLS.labels(platform, method or "unknown", status).inc()


def classify_response(response: httpx.Response, *, what: str) -> None:
    """Raise the right ConnectorError for a non-2xx response; return for 2xx.

    `what` names the call for the message, e.g. "slack chat.postMessage". Response bodies
    are not included: they may echo tokens or personal data.
    """
    status = response.status_code
    count_api_call(what, str(status))
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
    if status in (401, 403):
        raise AuthError(message, status=status)
    raise FatalError(message, status=status)


def json_object(response: httpx.Response, *, what: str, hint: str) -> dict[str, Any]:
    """The JSON object of a 2xx answer; a ConnectorError for anything else. A 2xx that is not a
    JSON object is not the platform at all (a proxy's login page, a wrong base URL): `hint`
    says which setting to check."""
    payload = _json_of(response, dict, what=what, hint=hint)
    assert isinstance(payload, dict)
    return payload


def json_list(response: httpx.Response, *, what: str, hint: str) -> list[Any]:
    """The JSON array of a 2xx answer (a listing that is a bare array, as WordPress's), as `json_object`."""
    payload = _json_of(response, list, what=what, hint=hint)
    assert isinstance(payload, list)
    return payload


def _json_of(response: httpx.Response, shape: type[dict[str, Any]] | type[list[Any]], *, what: str, hint: str) -> Any:
    classify_response(response, what=what)
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, shape):
        noun = "JSON object" if shape is dict else "JSON list"
        raise FatalError(f"{what}: HTTP {response.status_code} but not a {noun}; {hint}", status=response.status_code)
    return payload


#: Transport failures raised before any byte of the request is sent: the platform cannot have
#: acted on it. Every other one (a read or write timeout, a dropped connection, a protocol
#: error) may come after the platform received the request.
NEVER_SENT: tuple[type[httpx.TransportError], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def classify_transport_error(exc: httpx.TransportError, *, what: str) -> RetriableError:
    """Timeouts and connection failures are worth another try. `sent` says whether the request
    could have left (see `NEVER_SENT`). Raise the result `from exc`."""
    count_api_call(what, "transport_error")
    return RetriableError(f"{what}: {type(exc).__name__}", sent=not isinstance(exc, NEVER_SENT))


def outcome_unknown(error: ConnectorError) -> bool:
    """Whether a call that failed with `error` may nevertheless have been carried out, so that
    doing it again could do it twice.

    Yes for a 5xx (the platform may fail after storing) and for a transport failure once the
    request could have left (a read timeout, a dropped connection). No for a 408, a 429 and any
    other 4xx (the platform refused it), for a connection that never opened (`NEVER_SENT`), and
    for anything that is not retriable. A connector whose platform has answers of its own that
    leave the outcome open (Slack's `internal_error`) adds them on top of this one.
    """
    if not isinstance(error, RetriableError) or isinstance(error, BackpressureError):
        return False
    if error.status is not None:
        return error.status >= 500
    return error.sent
