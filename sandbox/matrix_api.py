"""A stand-in Matrix homeserver for tests: the client-server API calls threadlink's application
service makes (whoami, send, redact, room state, join), and the transactions a homeserver sends it.

Every request is recorded (`requests`) and checked against the Matrix spec's OpenAPI files and
event schemas (sandbox/contracts/matrix.py), and so is every answer and every transaction it
makes (`transaction()`); `assert_no_violations()` raises if any broke the spec.

It behaves as Synapse does where threadlink depends on it: the as_token acts as the service's
user (`@<sender_localpart>:<server_name>`); a repeated txnId of one token answers the first
event id again and makes nothing new; a room the user has not joined answers 403 M_FORBIDDEN;
a join without an invitation (or membership) answers 403 M_FORBIDDEN, a join of a room already
joined changes nothing; an unknown token 401 M_UNKNOWN_TOKEN; `fail_next` answers the next call with an error instead
(429 M_LIMIT_EXCEEDED with Retry-After and retry_after_ms, ...).
"""

from __future__ import annotations

import itertools
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sandbox.contracts import ContractViolation, Violation
from sandbox.contracts.matrix import MatrixContract, matrix_contract

_ERRCODES = {401: "M_UNKNOWN_TOKEN", 403: "M_FORBIDDEN", 404: "M_NOT_FOUND", 429: "M_LIMIT_EXCEEDED"}


@dataclass
class RecordedRequest:
    method: str
    path: str
    json: Any
    authenticated: bool


@dataclass
class Room:
    room_id: str
    join_rule: str = "public"
    history_visibility: str = "shared"
    encrypted: bool = False
    members: set[str] = field(default_factory=set)
    invited: set[str] = field(default_factory=set)
    timeline: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Failure:
    status: int
    retry_after: float | None
    errcode: str | None
    path_contains: str | None


class FakeMatrix:
    """Lifecycle: `await start()` before use (port 0: `url` says where), `await stop()` after."""

    def __init__(
        self,
        *,
        as_token: str,
        server_name: str = "localhost",
        sender_localpart: str = "threadlink",
        contract: MatrixContract | None = None,
    ) -> None:
        self._as_token = as_token
        self.server_name = server_name
        self.bot = f"@{sender_localpart}:{server_name}"
        self._contract = contract or matrix_contract()
        self.requests: list[RecordedRequest] = []
        self.violations: list[Violation] = []
        self.rooms: dict[str, Room] = {}
        self._txns: dict[tuple[str, str], str] = {}
        self._failures: list[_Failure] = []
        self._ids = itertools.count(1)
        self._txn_ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = "http://127.0.0.1:0"

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(middlewares=[self._middleware])
        base = "/_matrix/client/v3/rooms/{roomId}"
        app.router.add_put(base + "/send/{eventType}/{txnId}", self._send)
        app.router.add_put(base + "/redact/{eventId}/{txnId}", self._redact)
        app.router.add_get(base + "/state/{eventType}/", self._state)
        app.router.add_get(base + "/state/{eventType}", self._state)
        app.router.add_get("/_matrix/client/v3/account/whoami", self._whoami)
        app.router.add_post("/_matrix/client/v3/join/{roomIdOrAlias}", self._join)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.url = f"http://{host}:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- test controls ---------------------------------------------------------------------

    def add_room(self, *, join_rule: str = "public", joined: bool = True, members: tuple[str, ...] = ()) -> Room:
        room = Room(room_id=f"!{secrets.token_hex(6)}:{self.server_name}", join_rule=join_rule)
        room.members.update(members)
        if joined:
            room.members.add(self.bot)
        self.rooms[room.room_id] = room
        return room

    def post_user_message(
        self, room: Room, sender: str, body: str, *, relates_to: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A user's m.text in `room`, as the homeserver stores and forwards it (a client event)."""
        content: dict[str, Any] = {"msgtype": "m.text", "body": body}
        if relates_to is not None:
            content["m.relates_to"] = relates_to
        return self.post_event(room, sender, "m.room.message", content)

    def invite(self, room: Room, sender: str, invitee: str) -> dict[str, Any]:
        """`sender` invites `invitee`: the `m.room.member` event the homeserver forwards."""
        room.invited.add(invitee)
        return self.post_event(room, sender, "m.room.member", {"membership": "invite"}, state_key=invitee)

    def transaction(self, events: list[dict[str, Any]]) -> tuple[str, bytes]:
        """(txnId, body) of the transaction the homeserver would PUT to the service; the body is
        checked against the application service API first."""
        txn_id = str(next(self._txn_ids))
        body = {"events": events}
        self.violations += self._contract.check_request("PUT", f"/_matrix/app/v1/transactions/{txn_id}", body)
        return txn_id, json.dumps(body).encode()

    def fail_next(
        self,
        status: int,
        *,
        retry_after: float | None = None,
        errcode: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Answer the next client-server call (whose path contains `path_contains`, e.g. "/send/")
        with `status` (the errcode Synapse gives for it, `Retry-After` and, for a 429,
        `retry_after_ms`) instead of serving it."""
        self._failures.append(_Failure(status, retry_after, errcode or _ERRCODES.get(status), path_contains))

    def sent(self, room: Room, event_type: str = "m.room.message") -> list[dict[str, Any]]:
        """What threadlink's user sent into the room, oldest first."""
        return [e for e in room.timeline if e["sender"] == self.bot and e["type"] == event_type]

    def assert_no_violations(self) -> None:
        if self.violations:
            raise ContractViolation(self.violations)

    # -- the API ---------------------------------------------------------------------------

    def post_event(self, room: Room, sender: str, kind: str, content: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """Store an event in the room's timeline as the homeserver would (`extra`: `state_key`, ...)."""
        event = {
            "type": kind,
            "room_id": room.room_id,
            "sender": sender,
            "event_id": f"${next(self._ids)}-{secrets.token_hex(4)}",
            "origin_server_ts": 1_700_000_000_000 + len(room.timeline),
            "content": content,
            "unsigned": {"age": 1},
            **extra,
        }
        room.timeline.append(event)
        return event

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body: Any = None
        raw = await request.read()
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
        authenticated = request.headers.get("Authorization") == f"Bearer {self._as_token}"
        self.requests.append(RecordedRequest(request.method, request.path, body, authenticated))
        self.violations += self._contract.check_request(request.method, request.path, body)
        failure = next((f for f in self._failures if f.path_contains is None or f.path_contains in request.path), None)
        if failure is not None:
            self._failures.remove(failure)
            answer = self._error(failure.status, failure.errcode, retry_after=failure.retry_after)
        elif not authenticated:
            answer = self._error(401, "M_UNKNOWN_TOKEN")
        else:
            answer = await handler(request)
        if isinstance(answer, web.Response) and answer.body is not None:
            payload = json.loads(answer.body) if answer.body else None  # type: ignore[arg-type]
            self.violations += self._contract.check_response(request.method, request.path, answer.status, payload)
        return answer

    def _error(self, status: int, errcode: str | None, *, retry_after: float | None = None) -> web.Response:
        body: dict[str, Any] = {"errcode": errcode or "M_UNKNOWN", "error": f"fake matrix: {status}"}
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["Retry-After"] = f"{retry_after:g}"
            if status == 429:
                body["retry_after_ms"] = int(retry_after * 1000)
        return web.json_response(body, status=status, headers=headers)

    async def _whoami(self, request: web.Request) -> web.Response:
        return web.json_response({"user_id": self.bot, "is_guest": False})

    def _room(self, request: web.Request) -> Room | web.Response:
        room = self.rooms.get(request.match_info["roomId"])
        if room is None or self.bot not in room.members:
            return self._error(403, "M_FORBIDDEN")
        return room

    async def _send(self, request: web.Request) -> web.Response:
        room = self._room(request)
        if isinstance(room, web.Response):
            return room
        key = (self._as_token, request.match_info["txnId"])
        if key not in self._txns:
            event = self.post_event(room, self.bot, request.match_info["eventType"], await request.json())
            self._txns[key] = event["event_id"]
        return web.json_response({"event_id": self._txns[key]})

    async def _join(self, request: web.Request) -> web.Response:
        room = self.rooms.get(request.match_info["roomIdOrAlias"])
        if room is None or (self.bot not in room.members and self.bot not in room.invited):
            return self._error(403, "M_FORBIDDEN")
        if self.bot not in room.members:
            room.invited.discard(self.bot)
            room.members.add(self.bot)
            self.post_event(room, self.bot, "m.room.member", {"membership": "join"}, state_key=self.bot)
        return web.json_response({"room_id": room.room_id})

    async def _redact(self, request: web.Request) -> web.Response:
        room = self._room(request)
        if isinstance(room, web.Response):
            return room
        target = request.match_info["eventId"]
        if not any(e["event_id"] == target for e in room.timeline):
            return self._error(404, "M_NOT_FOUND")
        key = (self._as_token, request.match_info["txnId"])
        if key not in self._txns:
            body = await request.json()
            event = self.post_event(room, self.bot, "m.room.redaction", body, redacts=target)
            self._txns[key] = event["event_id"]
        return web.json_response({"event_id": self._txns[key]})

    async def _state(self, request: web.Request) -> web.Response:
        room = self._room(request)
        if isinstance(room, web.Response):
            return room
        kind = request.match_info["eventType"]
        content = {
            "m.room.join_rules": {"join_rule": room.join_rule},
            "m.room.history_visibility": {"history_visibility": room.history_visibility},
            "m.room.encryption": {"algorithm": "m.megolm.v1.aes-sha2"} if room.encrypted else None,
        }.get(kind)
        if content is None:
            return self._error(404, "M_NOT_FOUND")
        return web.json_response(content)
