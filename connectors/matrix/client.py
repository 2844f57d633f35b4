"""The client-server API calls threadlink makes as its application service user (as_token).

The as_token acts as the registration's `sender_localpart` user, so no `user_id` masquerade
parameter is needed for threadlink's own messages. Every send carries a transaction id: the
homeserver answers a repeated (as_token, txnId) with the event it made the first time, so a
retried command never posts twice.

Every answer becomes a ConnectorError in one place (`raise_for_matrix`), by HTTP status and the
spec's `errcode` (client-server API, "Standard error response"):

- 429, or `M_LIMIT_EXCEEDED` whatever the status: BackpressureError, its `retry_after` from
  `Retry-After`, else the body's `retry_after_ms` (the runtime holds the room's lane, retries);
- 5xx, 408, a timeout: RetriableError (retried);
- 401 (`M_UNKNOWN_TOKEN`, `M_MISSING_TOKEN`), or those codes with a 403: AuthError (the runtime
  pauses the sink until the as_token works);
- 403 `M_FORBIDDEN` (not in the room, or no power to do it there): NotPermitted, skippable (that
  one command is dead-lettered with the reason, the others go on);
- 404 `M_NOT_FOUND`: NotFoundError (skippable); other 4xx (`M_TOO_LARGE`, ...): FatalError.

Messages name the call and the errcode, never the token or the response body.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any
from urllib.parse import quote

import httpx

from connectors.errors import (
    AuthError,
    BackpressureError,
    FatalError,
    NotFoundError,
    RetriableError,
    SkippableError,
    classify_response,
    classify_transport_error,
    json_object,
    parse_retry_after,
)
from connectors.matrix.config import MatrixConfig
from connectors.matrix.mapping import RoomState

log = logging.getLogger(__name__)

#: Matrix error codes are upper-case words with dots (`M_FORBIDDEN`, `COM.EXAMPLE.CODE`); anything
#: else is not echoed into messages.
_ERRCODE = re.compile(r"^[A-Za-z0-9_.]{1,64}$")
AUTH_CODES = frozenset({"M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"})


class NotPermitted(SkippableError):
    """403 M_FORBIDDEN: threadlink's user is not in the room, or may not do this there. Only this
    command is affected; the others go on."""


def _errcode(response: httpx.Response) -> tuple[str | None, dict[str, Any]]:
    try:
        body = response.json()
    except ValueError:
        return None, {}
    if not isinstance(body, dict):
        return None, {}
    code = body.get("errcode")
    return (code if isinstance(code, str) and _ERRCODE.match(code) else None), body


def _retry_after(response: httpx.Response, body: dict[str, Any]) -> float | None:
    """`Retry-After` (seconds) first, as the spec prefers since v1.10; the deprecated body field
    `retry_after_ms` otherwise."""
    header = parse_retry_after(response.headers.get("Retry-After"))
    if header is not None:
        return header
    millis = body.get("retry_after_ms")
    if isinstance(millis, int | float) and not isinstance(millis, bool) and millis >= 0:
        return float(millis) / 1000
    return None


def raise_for_matrix(response: httpx.Response, *, what: str) -> dict[str, Any]:
    """The JSON object of a 2xx answer, or the ConnectorError its answer means (table above)."""
    status = response.status_code
    if 200 <= status < 300:
        return json_object(response, what=what, hint="is homeserver_url the client-server API?")
    code, body = _errcode(response)
    message = f"{what}: HTTP {status}" + (f" {code}" if code else "")
    if status == 429 or code == "M_LIMIT_EXCEEDED":
        raise BackpressureError(message, status=status, retry_after=_retry_after(response, body))
    if status == 401 or code in AUTH_CODES:
        raise AuthError(f"{message}: the homeserver refuses the as_token; check the registration", status=status)
    if status == 403 and code in (None, "M_FORBIDDEN"):
        raise NotPermitted(
            f"{message}: threadlink's user is not in the room or may not do this there (invite it, or raise "
            "its power level)",
            status=status,
        )
    if status == 404:
        raise NotFoundError(message, status=status)
    if status >= 500 or status == 408:
        raise RetriableError(message, status=status, retry_after=_retry_after(response, body))
    classify_response(response, what=message)  # the generic kinds for anything else
    raise FatalError(message, status=status)  # pragma: no cover - classify_response raised


def transaction_id(command_id: str) -> str:
    """The txnId of a command's request: the command id itself (already URL-safe: `kind-<hex>`),
    so a retry of the command is the same transaction and the homeserver does it once."""
    return f"tl.{command_id}" if re.fullmatch(r"[A-Za-z0-9._~-]{1,200}", command_id) else _hashed(command_id)


def _hashed(command_id: str) -> str:
    return "tl.sha256." + hashlib.sha256(command_id.encode()).hexdigest()


def _q(value: str) -> str:
    return quote(value, safe="")


class MatrixClient:
    """Lifecycle: built with the connector and shared by its source and sink. The pooled
    httpx.AsyncClient is opened on first use; `aclose()` closes it (a later call opens a new
    one, so closing from both the source and the sink is safe)."""

    def __init__(
        self, config: MatrixConfig, *, timeout_s: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._config = config
        self._timeout_s = timeout_s
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None or self._http.is_closed:
            self._http = httpx.AsyncClient(
                base_url=self._config.homeserver_url.rstrip("/"),
                headers={
                    "Authorization": f"Bearer {self._config.as_token.get_secret_value()}",
                    "Accept": "application/json",
                },
                timeout=self._timeout_s,
                transport=self._transport,
            )
        return self._http

    async def _call(self, method: str, path: str, what: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = await self._client().request(method, path, json=body)
        except httpx.TransportError as exc:
            raise classify_transport_error(exc, what=what) from exc
        return raise_for_matrix(response, what=what)

    async def send_event(self, room_id: str, event_type: str, txn_id: str, content: dict[str, Any]) -> str:
        """PUT /rooms/{roomId}/send/{eventType}/{txnId}: the event id (the same one again for a
        repeated txnId)."""
        path = f"/_matrix/client/v3/rooms/{_q(room_id)}/send/{_q(event_type)}/{_q(txn_id)}"
        answer = await self._call("PUT", path, f"matrix send {event_type}", content)
        event_id = answer.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            raise FatalError(f"matrix send {event_type}: the homeserver answered without an event_id", status=200)
        return event_id

    async def whoami(self) -> str:
        """GET /account/whoami: the user the as_token acts as."""
        answer = await self._call("GET", "/_matrix/client/v3/account/whoami", "matrix whoami")
        user_id = answer.get("user_id")
        if not isinstance(user_id, str):
            raise FatalError("matrix whoami: the homeserver answered without a user_id", status=200)
        return user_id

    async def join(self, room_id: str) -> str:
        """POST /join/{roomIdOrAlias} as the service's own user: accept its invitation. Joining a
        room it is already in changes nothing (the homeserver answers the room id again), so a
        repeated join is harmless. The service's user is the as_token's own, so no `user_id`
        (identity assertion) parameter is needed."""
        answer = await self._call("POST", f"/_matrix/client/v3/join/{_q(room_id)}", "matrix join", {})
        joined = answer.get("room_id")
        if not isinstance(joined, str) or not joined:
            raise FatalError("matrix join: the homeserver answered without a room_id", status=200)
        return joined

    async def redact(self, room_id: str, event_id: str, txn_id: str, reason: str | None = None) -> str | None:
        """PUT /rooms/{roomId}/redact/{eventId}/{txnId}: the redaction's event id."""
        path = f"/_matrix/client/v3/rooms/{_q(room_id)}/redact/{_q(event_id)}/{_q(txn_id)}"
        answer = await self._call("PUT", path, "matrix redact", {"reason": reason} if reason else {})
        redaction = answer.get("event_id")
        return redaction if isinstance(redaction, str) else None

    async def _state(self, room_id: str, kind: str) -> dict[str, Any] | None:
        """A state event's content; None when the room has none of that kind (404). A refusal
        (403: the service is not in the room yet) raises NotPermitted: the state is unknown, not
        absent."""
        try:
            return await self._call("GET", f"/_matrix/client/v3/rooms/{_q(room_id)}/state/{kind}/", f"matrix {kind}")
        except NotFoundError:
            return None

    async def room_state(self, room_id: str) -> RoomState | None:
        """The room's join rule, history visibility and encryption, or None when unreadable (the
        room then stays `restricted`, the safe side, and is asked again with its next event)."""
        try:
            join_rules = await self._state(room_id, "m.room.join_rules")
            history = await self._state(room_id, "m.room.history_visibility")
            encryption = await self._state(room_id, "m.room.encryption")
        except NotPermitted:
            return None  # not in the room yet (an invite): asked again once it has joined
        except (RetriableError, FatalError, SkippableError, ValueError) as exc:
            log.warning("matrix: could not read room %s's state (%s); it counts as restricted", room_id, exc)
            return None
        return RoomState(
            join_rule=(join_rules or {}).get("join_rule"),
            history_visibility=(history or {}).get("history_visibility"),
            encrypted=encryption is not None,
        )

    async def aclose(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()
