"""SANDBOX ONLY: a local stand-in for Slack, for demos and tests. Never a default anywhere.

`FakeSlack` is an aiohttp application that speaks Slack's wire format and auth:

- Web API (`/api/<method>`): auth.test, chat.postMessage, chat.update, chat.delete, chat.getPermalink,
  conversations.replies, conversations.history, conversations.info (chat.getPermalink's links
  point at `permalink_base`, e.g. an Enterprise Grid org's URL, else at the workspace's);
  `Authorization: Bearer <token>` (or a `token` parameter, as Slack allows); form-encoded or
  JSON bodies; errors as `{"ok": false, "error": ...}` with HTTP 200, like Slack.
- Events API: user messages (and, like Slack, the bot's own posts and edits) are POSTed as
  signed `event_callback`s to `events_url`, redelivered on non-2xx or timeout with
  `X-Slack-Retry-Num` 1..3 and `X-Slack-Retry-Reason`.
- Contract checks (`sandbox.contracts.slack`): every request it gets, every success answer and
  every event it sends is checked against Slack's published specs; problems are recorded in
  `violations` (or refused, in strict mode).
- Failures are injected with `fail_next`, including the ambiguous kind: `after_store=True`
  carries the call out (the message is stored, its event sent) and then answers the failure;
  `delay_s` holds the answer back (longer than the client's timeout: the client times out).
- Messages keep their Block Kit `blocks`, `block_id`s included, and conversations.replies
  returns them, as Slack does. It honours `oldest`/`latest`/`inclusive` (the root always comes
  first) and `limit` (`has_more` says more are left). It never pages by `cursor`: the spec's
  success schema for conversations.replies has no `response_metadata`, so the first `limit`
  messages are all a caller gets.
- Rate limits, when `channel_messages_per_s` is set: chat.postMessage into a channel that has
  had that many posts in the last second is answered HTTP 429 `ratelimited` with
  `Retry-After: 1`, as Slack does ("about one message per second per channel"); the refusals
  are counted in `rate_limited`, the busiest second of each channel in `peak_per_channel`.
- `/sandbox/post_message` and `/sandbox/thread`: drive it over HTTP from a demo CLI.

Example::

    async with FakeSlack(events_url="http://127.0.0.1:8080/webhooks/slack/events") as slack:
        config = SlackConfig(signing_secret=slack.signing_secret, bot_token=slack.bot_token,
                             api_base_url=slack.api_url)
        ts = await slack.post_user_message("C0GENERAL1", "PROJ-1 is broken again")
        ...
        assert not slack.violations
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

from sandbox.contracts.slack import ContractViolation, SlackEventsContract, SlackWebApiContract, Violation

log = logging.getLogger(__name__)

#: Slack retries a delivery three times (https://api.slack.com/apis/events-api#retries).
MAX_RETRIES = 3
MAX_TEXT = 40_000
#: Slack's limit on a block_id (https://api.slack.com/reference/block-kit/blocks).
MAX_BLOCK_ID = 255
#: conversations.replies' default and largest `limit`.
MAX_REPLIES_LIMIT = 1000


@dataclass
class RecordedRequest:
    """One Web API request, as the fake received it."""

    method: str
    """HTTP verb."""
    path: str
    api_method: str
    headers: dict[str, str]
    params: dict[str, Any]
    """Query and body parameters together (form values are strings; JSON keeps its types)."""
    content_type: str | None = None


@dataclass
class Delivery:
    """One attempt to deliver an event to `events_url`."""

    event_id: str
    retry_num: int
    status: int | None
    """HTTP status of the answer; None for a timeout or a refused connection."""
    reason: str | None = None
    """Why it failed, in Slack's words (http_error, http_timeout, connection_failed)."""
    at: float = 0.0
    """When the answer (or the failure) came, on the stand-in's clock."""


@dataclass
class _Fault:
    error: str | None
    status: int
    retry_after: float | None
    after_store: bool = False
    delay_s: float = 0.0


@dataclass
class _Channel:
    id: str
    type: str
    archived: bool = False
    ext_shared: bool = False
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)


class _SlackError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def sign(signing_secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 signature (written here again, on purpose: the fake checks the connector's)."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


class FakeSlack:
    """A sandbox Slack workspace with one app installed. See the module docstring."""

    def __init__(
        self,
        *,
        signing_secret: str = "sandbox-signing-secret",
        bot_token: str = "xoxb-sandbox-token",
        events_url: str | None = None,
        team_id: str = "T0001",
        team_name: str = "Sandbox",
        bot_user_id: str = "U0THREADLNK",
        bot_id: str = "B0THREADLNK",
        app_id: str = "A0THREADLNK",
        verification_token: str = "sandbox-verification-token",
        strict: bool = False,
        check_contracts: bool = True,
        event_timeout_s: float = 3.0,
        retry_delays_s: Sequence[float] = (0.05, 0.1, 0.2),
        clock: Callable[[], float] = time.time,
        channel_messages_per_s: int | None = None,
        permalink_base: str | None = None,
    ) -> None:
        self.signing_secret = signing_secret
        self.permalink_base = permalink_base
        self.channel_messages_per_s = channel_messages_per_s
        self.rate_limited = 0
        self.peak_per_channel: dict[str, int] = {}
        self._recent_posts: dict[str, deque[float]] = defaultdict(deque)
        self.bot_token = bot_token
        self.events_url = events_url
        self.team_id = team_id
        self.team_name = team_name
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.verification_token = verification_token
        self.strict = strict
        self.event_timeout_s = event_timeout_s
        self.retry_delays_s = tuple(retry_delays_s)
        self._clock = clock

        # Loading the specs raises SpecsMissing (saying where they were looked for) when absent;
        # check_contracts=False runs the fake without them (a demo on a machine without specs).
        self.web_contract = SlackWebApiContract() if check_contracts else None
        self.events_contract = SlackEventsContract() if check_contracts else None
        self.requests: list[RecordedRequest] = []
        self.violations: list[Violation] = []
        self.events: list[dict[str, Any]] = []
        """Every event payload sent (once each, whatever the number of attempts)."""
        self.deliveries: list[Delivery] = []

        self._channels: dict[str, _Channel] = {}
        self._faults: dict[str, deque[_Fault]] = defaultdict(deque)
        self._events_by_id: dict[str, dict[str, Any]] = {}
        self._last_us = 0
        self._event_seq = 0
        self._event_prefix = secrets.token_hex(3).upper()  # unique across restarts, like Slack's ids
        self._app: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self._url: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def app(self) -> web.Application:
        if self._app is None:
            app = web.Application()
            app.router.add_route("*", "/api/{method}", self._api)
            app.router.add_post("/sandbox/post_message", self._sandbox_post_message)
            app.router.add_get("/sandbox/thread", self._sandbox_thread)
            app.router.add_get("/sandbox/violations", self._sandbox_violations)
            self._app = app
        return self._app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0: a free port); returns `url`."""
        self._stopping.clear()
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self._url = f"http://{host}:{bound}"
        return self._url

    async def stop(self) -> None:
        self._stopping.set()  # answers held back by fail_next(delay_s=...) go out now
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("FakeSlack is not started: await start() first")
        return self._url

    @property
    def api_url(self) -> str:
        """What SlackConfig.api_base_url should be set to."""
        return f"{self.url}/api"

    # -- test helpers ------------------------------------------------------------------------

    def calls(self, api_method: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.api_method == api_method]

    def assert_no_violations(self) -> None:
        if self.violations:
            raise ContractViolation(list(self.violations))

    def add_channel(
        self, channel: str, channel_type: str = "channel", *, archived: bool = False, ext_shared: bool = False
    ) -> None:
        """A conversation the bot is a member of (user messages create theirs on the way);
        `ext_shared`: shared with another organisation (Slack Connect)."""
        existing = self._channels.setdefault(channel, _Channel(channel, channel_type))
        existing.archived = archived
        existing.ext_shared = ext_shared

    def add_history(self, channel: str, text: str, *, user: str = "U0001", thread_ts: str | None = None) -> str:
        """A message from before threadlink was there: stored (conversations.history and
        .replies return it), no event sent. Returns its ts."""
        conversation = self._channels.setdefault(channel, _Channel(channel, "channel"))
        return str(self._store(conversation, {"type": "message", "user": user, "text": text}, thread_ts)["ts"])

    def fail_next(
        self,
        api_method: str,
        error: str | None = "ratelimited",
        *,
        status: int = 200,
        retry_after: float | None = None,
        times: int = 1,
        after_store: bool = False,
        delay_s: float = 0.0,
    ) -> None:
        """Answer the next `times` calls of `api_method` with `{"ok": false, "error": error}` and
        HTTP `status` (429 with `retry_after` is how Slack rate-limits; `error=None`: no body).

        `after_store=True` carries the call out first (a message is stored, its event sent) and
        answers the failure all the same: Slack failing after the work was done. `delay_s` holds
        the answer back that long (until `stop()` at most); longer than the client's timeout,
        the client times out, and with `after_store` that is "posted, but the answer never came"."""
        for _ in range(times):
            self._faults[api_method].append(_Fault(error, status, retry_after, after_store, delay_s))

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The thread's root and its replies, oldest first (copies)."""
        conversation = self._channels.get(channel)
        if conversation is None or ts not in conversation.messages:
            return []
        root = conversation.messages[ts]
        replies = [m for m in conversation.messages.values() if m.get("thread_ts") == ts and m["ts"] != ts]
        return copy.deepcopy([root, *sorted(replies, key=lambda m: m["ts"])])

    async def wait_for_deliveries(self) -> None:
        """Wait until the events of the bot's own posts (sent in the background) are delivered."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # -- what users do -----------------------------------------------------------------------

    def channel_messages(self, channel: str) -> list[dict[str, Any]]:
        """The channel's top-level messages (roots of threads), oldest first (copies)."""
        conversation = self._channels.get(channel)
        if conversation is None:
            return []
        roots = [m for m in conversation.messages.values() if m.get("thread_ts") in (None, m["ts"])]
        return copy.deepcopy(sorted(roots, key=lambda m: m["ts"]))

    async def post_user_message(
        self,
        channel: str,
        text: str,
        user: str = "U0001",
        thread_ts: str | None = None,
        channel_type: str = "channel",
    ) -> str:
        """A person posts `text` (into the thread of `thread_ts`); the `message` event is
        delivered (with Slack's retries) before this returns. Returns the message's ts."""
        conversation = self._channels.setdefault(channel, _Channel(channel, channel_type))
        message = self._store(conversation, {"type": "message", "user": user, "text": text}, thread_ts)
        message["client_msg_id"] = str(uuid.uuid4())
        event = {
            **_event_view(message),
            "channel": channel,
            "event_ts": message["ts"],
            "channel_type": conversation.type,
        }
        await self._send_event(event)
        return message["ts"]

    async def edit_user_message(self, channel: str, ts: str, text: str) -> None:
        """A person edits their message: a `message_changed` event."""
        conversation = self._channels[channel]
        previous = copy.deepcopy(conversation.messages[ts])
        message = conversation.messages[ts]
        message["text"] = text
        message["edited"] = {"user": message.get("user", ""), "ts": self._next_ts()}
        await self._send_event(self._changed_event(conversation, previous, message))

    async def delete_user_message(self, channel: str, ts: str) -> None:
        """A message is deleted: a `message_deleted` event."""
        conversation = self._channels[channel]
        previous = conversation.messages.pop(ts)
        event_ts = self._next_ts()
        await self._send_event(
            {
                "type": "message",
                "subtype": "message_deleted",
                "hidden": True,
                "channel": channel,
                "channel_type": conversation.type,
                "ts": event_ts,
                "event_ts": event_ts,
                "deleted_ts": ts,
                "previous_message": _event_view(previous),
            }
        )

    async def add_reaction(self, channel: str, ts: str, name: str, user: str = "U0001") -> None:
        """A person reacts to a message: a `reaction_added` event (the message keeps a count)."""
        conversation = self._channels[channel]
        message = conversation.messages[ts]
        reactions = message.setdefault("reactions", [])
        entry = next((r for r in reactions if r["name"] == name), None)
        if entry is None:
            reactions.append({"name": name, "users": [user], "count": 1})
        elif user not in entry["users"]:
            entry["users"].append(user)
            entry["count"] += 1
        event_ts = self._next_ts()
        await self._send_event(
            {
                "type": "reaction_added",
                "user": user,
                "reaction": name,
                "item_user": message.get("user", ""),
                "item": {"type": "message", "channel": channel, "ts": ts},
                "event_ts": event_ts,
            }
        )

    async def redeliver(self, event_id: str, reason: str = "http_timeout", retry_num: int | None = None) -> int | None:
        """Send a past event once more, as a Slack retry (its `X-Slack-Retry-Num` defaults to
        the number of earlier attempts). Returns the HTTP status of the answer."""
        payload = self._events_by_id[event_id]
        if retry_num is None:
            retry_num = min(MAX_RETRIES, sum(1 for d in self.deliveries if d.event_id == event_id) or 1)
        status, _failure = await self._attempt(payload, retry_num, reason)
        return status

    async def verify_events_url(self) -> bool:
        """What Slack does when the Request URL is set: a url_verification challenge."""
        challenge = secrets.token_urlsafe(24)
        payload = {"token": self.verification_token, "challenge": challenge, "type": "url_verification"}
        self._check_event(payload)
        body = json.dumps(payload).encode()
        session = self._client_session()
        try:
            async with session.post(self._events_target(), data=body, headers=self._signed(body)) as response:
                answer = await response.json(content_type=None) if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False
        return isinstance(answer, dict) and answer.get("challenge") == challenge

    # -- Web API -----------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        content_type = request.content_type if request.method != "GET" and request.can_read_body else None
        params: dict[str, Any] = dict(request.query)
        try:
            params.update(await _body_params(request, content_type))
        except _SlackError as exc:
            return _slack_error(exc.code)
        recorded = RecordedRequest(request.method, request.path, method, dict(request.headers), params, content_type)
        self.requests.append(recorded)

        problems = (
            self.web_contract.check_request(
                method, params=params, headers=request.headers, http_method=request.method, content_type=content_type
            )
            if self.web_contract
            else []
        )
        self.violations.extend(problems)
        if self.strict and problems:
            messages = [p.problem for p in problems]
            return web.json_response(
                {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": messages}}
            )

        handler = self._handlers().get(method)
        if handler is None:
            return _slack_error("unknown_method")
        token = _bearer(request.headers.get("Authorization"))
        if token is None and content_type != "application/json":
            token = params.get("token") or None  # JSON bodies must use the header, as on Slack
        if not token:
            return _slack_error("not_authed")
        if not hmac.compare_digest(str(token).encode(), self.bot_token.encode()):
            return _slack_error("invalid_auth")
        if method == "chat.postMessage" and self._over_channel_limit(str(params.get("channel", ""))):
            self.rate_limited += 1
            return _slack_error("ratelimited", status=429, headers={"Retry-After": "1"})
        fault = self._faults[method].popleft() if self._faults[method] else None
        if fault is not None and not fault.after_store:
            return await self._injected(fault)
        try:
            answer = handler(params)
        except _SlackError as exc:
            return await self._injected(fault) if fault is not None else _slack_error(exc.code)
        if self.web_contract:
            self.violations.extend(self.web_contract.check_response(method, answer, http_method=request.method))
        if fault is not None:
            return await self._injected(fault)  # the work is done; the caller hears otherwise
        return web.json_response(answer)

    def _over_channel_limit(self, channel: str) -> bool:
        """Whether a post now would exceed `channel_messages_per_s` in the last second (and if
        not, count it)."""
        if self.channel_messages_per_s is None:
            return False
        now = time.monotonic()
        recent = self._recent_posts[channel]
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        if len(recent) >= self.channel_messages_per_s:
            return True
        recent.append(now)
        self.peak_per_channel[channel] = max(self.peak_per_channel.get(channel, 0), len(recent))
        return False

    async def _injected(self, fault: _Fault) -> web.Response:
        if fault.delay_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), fault.delay_s)
        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
        if fault.error is None:
            return web.Response(status=fault.status, headers=headers)
        return _slack_error(fault.error, status=fault.status, headers=headers)

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update_message,
            "chat.delete": self._delete_message,
            "chat.getPermalink": self._permalink,
            "reactions.add": self._reactions_add,
            "conversations.replies": self._replies,
            "conversations.history": self._history,
            "conversations.info": self._info,
        }

    def _auth_test(self, _params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{self.team_name.lower()}.slack.com/",
            "team": self.team_name,
            "user": "threadlink",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _conversation(self, params: dict[str, Any]) -> _Channel:
        conversation = self._channels.get(str(params.get("channel", "")))
        if conversation is None:
            raise _SlackError("channel_not_found")
        return conversation

    def _message(self, params: dict[str, Any], ts_param: str) -> tuple[_Channel, str, dict[str, Any]]:
        """(conversation, ts, message) of the message a call names by its `ts_param`."""
        conversation = self._conversation(params)
        ts = str(params.get(ts_param, ""))
        message = conversation.messages.get(ts)
        if message is None:
            raise _SlackError("message_not_found")
        return conversation, ts, message

    def _post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        conversation = self._conversation(params)
        if conversation.archived:
            raise _SlackError("is_archived")
        text = params.get("text")
        blocks = _blocks(params.get("blocks"))
        if not text and not blocks:
            raise _SlackError("no_text")
        if text and len(str(text)) > MAX_TEXT:
            raise _SlackError("msg_too_long")
        thread_ts = params.get("thread_ts") or None
        fields: dict[str, Any] = {"type": "message", "user": self.bot_user_id, "text": str(text or "")}
        fields |= {"bot_id": self.bot_id, "app_id": self.app_id, "bot_profile": self._bot_profile()}
        if blocks:
            fields["blocks"] = blocks
        message = self._store(conversation, fields, str(thread_ts) if thread_ts else None)
        # Slack tells the app about its own posts too (it is how bots end up answering themselves).
        event = {**_event_view(message), "channel": conversation.id, "event_ts": message["ts"]}
        self._in_background(self._send_event({**event, "channel_type": conversation.type}))
        return {"ok": True, "channel": conversation.id, "ts": message["ts"], "message": _api_view(message)}

    def _reactions_add(self, params: dict[str, Any]) -> dict[str, Any]:
        conversation, ts, message = self._message(params, "timestamp")
        name = str(params.get("name", ""))
        if not name:
            raise _SlackError("invalid_name")
        reactions = message.setdefault("reactions", [])
        entry = next((r for r in reactions if r["name"] == name), None)
        if entry is not None and self.bot_user_id in entry["users"]:
            raise _SlackError("already_reacted")
        if entry is None:
            reactions.append({"name": name, "users": [self.bot_user_id], "count": 1})
        else:
            entry["users"].append(self.bot_user_id)
            entry["count"] += 1
        # Slack tells the app of its own reaction too: the source must know it for its own.
        event = {
            "type": "reaction_added",
            "user": self.bot_user_id,
            "reaction": name,
            "item_user": message.get("user", ""),
            "item": {"type": "message", "channel": conversation.id, "ts": ts},
            "event_ts": self._next_ts(),
        }
        self._in_background(self._send_event(event))
        return {"ok": True}

    def reactions_by_threadlink(self, channel: str, ts: str) -> list[str]:
        """The reactions threadlink's bot put on a message."""
        message = self._channels[channel].messages.get(ts, {})
        return [r["name"] for r in message.get("reactions", []) if self.bot_user_id in r["users"]]

    def _update_message(self, params: dict[str, Any]) -> dict[str, Any]:
        conversation, _ts, message = self._message(params, "ts")
        if message.get("bot_id") != self.bot_id:
            raise _SlackError("cant_update_message")
        text = params.get("text")
        if text and len(str(text)) > MAX_TEXT:
            raise _SlackError("msg_too_long")
        previous = copy.deepcopy(message)
        if text is not None:
            message["text"] = str(text)
        if "blocks" in params:
            message["blocks"] = _blocks(params["blocks"])
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        self._in_background(self._send_event(self._changed_event(conversation, previous, message)))
        # The spec's chat.update answer declares `message.blocks` an object (Slack sends an
        # array), so blocks are left out of the answer to keep it inside the contract.
        return {
            "ok": True,
            "channel": conversation.id,
            "ts": message["ts"],
            "text": message["text"],
            "message": {"text": message["text"], "user": self.bot_user_id, "bot_id": self.bot_id},
        }

    def _delete_message(self, params: dict[str, Any]) -> dict[str, Any]:
        conversation, ts, message = self._message(params, "ts")
        if message.get("bot_id") != self.bot_id:
            raise _SlackError("cant_delete_message")
        del conversation.messages[ts]
        event_ts = self._next_ts()
        self._in_background(
            self._send_event(
                {
                    "type": "message",
                    "subtype": "message_deleted",
                    "hidden": True,
                    "channel": conversation.id,
                    "channel_type": conversation.type,
                    "ts": event_ts,
                    "event_ts": event_ts,
                    "deleted_ts": ts,
                    "previous_message": _event_view(message),
                }
            )
        )
        return {"ok": True, "channel": conversation.id, "ts": ts}

    def _replies(self, params: dict[str, Any]) -> dict[str, Any]:
        conversation = self._conversation(params)
        messages = self.thread(conversation.id, str(params.get("ts", "")))
        if not messages:
            raise _SlackError("thread_not_found")
        oldest = _ts_param(params, "oldest", "invalid_ts_oldest")
        latest = _ts_param(params, "latest", "invalid_ts_latest")
        inclusive = str(params.get("inclusive", "")).lower() in ("true", "1")

        def in_range(ts: str) -> bool:
            at = Decimal(ts)
            after = oldest is None or at > oldest or (inclusive and at == oldest)
            before = latest is None or at < latest or (inclusive and at == latest)
            return after and before

        # Like Slack, the thread's root comes first whatever the range.
        root, replies = messages[0], [m for m in messages[1:] if in_range(m["ts"])]
        try:
            limit = min(max(int(params.get("limit", MAX_REPLIES_LIMIT)), 1), MAX_REPLIES_LIMIT)
        except (TypeError, ValueError):
            limit = MAX_REPLIES_LIMIT
        page = [root, *replies][:limit]
        return {"ok": True, "messages": page, "has_more": len(replies) + 1 > limit}

    def _history(self, params: dict[str, Any]) -> dict[str, Any]:
        """Top-level messages (and thread broadcasts), newest first, between `oldest` and
        `latest`. Like `_replies` it pages only by `latest`/`oldest` and `has_more`: the spec's
        success schema has no `response_metadata` (real Slack adds a cursor there)."""
        conversation = self._conversation(params)
        oldest = _ts_param(params, "oldest", "invalid_ts_oldest")
        latest = _ts_param(params, "latest", "invalid_ts_latest")
        inclusive = str(params.get("inclusive", "")).lower() in ("true", "1")
        try:
            limit = min(max(int(params.get("limit", 100)), 1), MAX_REPLIES_LIMIT)
        except (TypeError, ValueError):
            limit = 100
        top = [
            _api_view(m)
            for ts, m in sorted(conversation.messages.items(), key=lambda item: Decimal(item[0]), reverse=True)
            if m.get("thread_ts") in (None, ts) or m.get("subtype") == "thread_broadcast"
        ]

        def in_range(ts: str) -> bool:
            at = Decimal(ts)
            after = oldest is None or at > oldest or (inclusive and at == oldest)
            before = latest is None or at < latest or (inclusive and at == latest)
            return after and before

        # An empty range answers `messages: []`, as Slack does, though the spec says minItems 1.
        chosen = [m for m in top if in_range(m["ts"])]
        return {
            "ok": True,
            "messages": chosen[:limit],
            "has_more": len(chosen) > limit,
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
        }

    def _permalink(self, params: dict[str, Any]) -> dict[str, Any]:
        conversation, ts, message = self._message(params, "message_ts")
        base = (self.permalink_base or f"https://{self.team_name.lower()}.slack.com").rstrip("/")
        link = f"{base}/archives/{conversation.id}/p{ts.replace('.', '')}"
        thread_ts = message.get("thread_ts")
        if thread_ts and thread_ts != ts:
            link += f"?thread_ts={thread_ts}&cid={conversation.id}"
        return {"ok": True, "channel": conversation.id, "permalink": link}

    def _info(self, params: dict[str, Any]) -> dict[str, Any]:
        conversation = self._conversation(params)
        kind = conversation.type
        return {
            "ok": True,
            "channel": {
                "id": conversation.id,
                "name": conversation.id.lower(),
                "name_normalized": conversation.id.lower(),
                "created": 1_700_000_000,
                "creator": "U0001",
                "is_archived": conversation.archived,
                "is_channel": kind == "channel",
                "is_group": kind == "group",
                "is_im": kind == "im",
                "is_mpim": kind == "mpim",
                "is_private": kind in ("group", "im", "mpim"),
                "is_general": False,
                "is_shared": conversation.ext_shared,
                "is_ext_shared": conversation.ext_shared,
                "is_org_shared": False,
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {"value": "", "creator": "", "last_set": 0},
            },
        }

    def _bot_profile(self) -> dict[str, Any]:
        icon = "https://a.slack-edge.com/80588/img/plugins/app/service_36.png"
        return {
            "id": self.bot_id,
            "app_id": self.app_id,
            "name": "threadlink",
            "deleted": False,
            "updated": 1_700_000_000,
            "team_id": self.team_id,
            "icons": {"image_36": icon, "image_48": icon, "image_72": icon},
        }

    # -- messages and events -----------------------------------------------------------------

    def _next_ts(self) -> str:
        """Slack's message ids: epoch seconds with six decimals, strictly increasing."""
        self._last_us = max(int(self._clock() * 1_000_000), self._last_us + 1)
        return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"

    def _store(self, conversation: _Channel, fields: dict[str, Any], thread_ts: str | None) -> dict[str, Any]:
        message = {**fields, "ts": self._next_ts()}
        if thread_ts:
            root = conversation.messages.get(thread_ts)
            if root is not None and root.get("thread_ts") not in (None, thread_ts):
                thread_ts = root["thread_ts"]  # a reply's ts was given: Slack threads under its parent
                root = conversation.messages.get(thread_ts)
            message["thread_ts"] = thread_ts
            if root is not None:
                if root.get("user"):
                    message["parent_user_id"] = root["user"]
                repliers = root.setdefault("reply_users", [])
                if message.get("user") and message["user"] not in repliers:
                    repliers.append(message["user"])
                root |= {
                    "thread_ts": thread_ts,
                    "reply_count": root.get("reply_count", 0) + 1,
                    "reply_users_count": len(repliers),
                    "latest_reply": message["ts"],
                }
        conversation.messages[message["ts"]] = message
        return message

    def _changed_event(
        self, conversation: _Channel, previous: dict[str, Any], message: dict[str, Any]
    ) -> dict[str, Any]:
        event_ts = self._next_ts()
        return {
            "type": "message",
            "subtype": "message_changed",
            "hidden": True,
            "channel": conversation.id,
            "channel_type": conversation.type,
            "ts": event_ts,
            "event_ts": event_ts,
            "message": _event_view(message),
            "previous_message": _event_view(previous),
        }

    def _ext_shared(self, event: dict[str, Any]) -> bool:
        channel = event.get("channel") or (event.get("item") or {}).get("channel")
        conversation = self._channels.get(channel) if isinstance(channel, str) else None
        return conversation is not None and conversation.ext_shared

    def _wrap(self, event: dict[str, Any]) -> dict[str, Any]:
        self._event_seq += 1
        return {
            "token": self.verification_token,
            "team_id": self.team_id,
            "context_team_id": self.team_id,
            "api_app_id": self.app_id,
            "event": {**event, "team": self.team_id} if "user" in event else event,
            "type": "event_callback",
            "event_id": f"Ev{self._event_prefix}{self._event_seq:04d}",
            "event_time": int(self._clock()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "authed_users": [self.bot_user_id],
            # As Slack does: the event of a Slack Connect channel says so.
            "is_ext_shared_channel": self._ext_shared(event),
            "event_context": f"4-{secrets.token_urlsafe(12)}",
        }

    def _check_event(self, payload: dict[str, Any]) -> None:
        problems = self.events_contract.check_event(payload) if self.events_contract else []
        self.violations.extend(problems)
        if self.strict and problems:
            raise ContractViolation(problems)

    async def _send_event(self, event: dict[str, Any]) -> int | None:
        """Wrap, check, and deliver with Slack's retries; the last answer's status."""
        payload = self._wrap(event)
        self._check_event(payload)
        self.events.append(payload)
        self._events_by_id[payload["event_id"]] = payload
        if not self.events_url:
            return None
        status: int | None = None
        reason: str | None = None
        for retry_num in range(MAX_RETRIES + 1):
            if retry_num:
                await asyncio.sleep(self.retry_delays_s[min(retry_num - 1, len(self.retry_delays_s) - 1)])
            status, reason = await self._attempt(payload, retry_num, reason)
            if status is not None and 200 <= status < 300:
                return status
        log.warning("sandbox slack: event %s not accepted after %d retries", payload["event_id"], MAX_RETRIES)
        return status

    async def _attempt(
        self, payload: dict[str, Any], retry_num: int, reason: str | None
    ) -> tuple[int | None, str | None]:
        """(status, failure reason) of one delivery."""
        body = json.dumps(payload).encode()
        headers = self._signed(body)
        if retry_num:
            headers |= {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": reason or "http_error"}
        timeout = aiohttp.ClientTimeout(total=self.event_timeout_s)
        session = self._client_session()
        try:
            async with session.post(self._events_target(), data=body, headers=headers, timeout=timeout) as response:
                await response.read()
                status: int | None = response.status
                failure = None if 200 <= response.status < 300 else "http_error"
        except TimeoutError:
            status, failure = None, "http_timeout"
        except aiohttp.ClientError:
            status, failure = None, "connection_failed"
        self.deliveries.append(Delivery(payload["event_id"], retry_num, status, failure, at=self._clock()))
        return status, failure

    def _events_target(self) -> str:
        if not self.events_url:
            raise RuntimeError("FakeSlack has no events_url to deliver to")
        return self.events_url

    def _signed(self, body: bytes) -> dict[str, str]:
        timestamp = str(int(self._clock()))
        return {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": sign(self.signing_secret, timestamp, body),
        }

    def _client_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    def _in_background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Strict mode's ContractViolation is already in `violations`; say it here too.
            log.error("sandbox slack: background event delivery failed: %s", task.exception())

    # -- sandbox routes (not Slack's) --------------------------------------------------------

    async def _sandbox_post_message(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            channel, text = body["channel"], body["text"]
            if not isinstance(channel, str) or not isinstance(text, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return web.json_response({"ok": False, "error": "send JSON {channel, text, user?, thread_ts?}"}, status=400)
        ts = await self.post_user_message(
            channel,
            text,
            user=body.get("user") or "U0001",
            thread_ts=body.get("thread_ts"),
            channel_type=body.get("channel_type") or "channel",
        )
        return web.json_response({"ok": True, "channel": channel, "ts": ts})

    async def _sandbox_thread(self, request: web.Request) -> web.Response:
        messages = self.thread(request.query.get("channel", ""), request.query.get("ts", ""))
        if not messages:
            return web.json_response({"ok": False, "error": "thread_not_found"}, status=404)
        return web.json_response({"ok": True, "messages": messages})

    async def _sandbox_violations(self, _request: web.Request) -> web.Response:
        return web.json_response({"violations": [str(v) for v in self.violations]})


def _event_view(message: dict[str, Any]) -> dict[str, Any]:
    """A stored message as events carry it."""
    return copy.deepcopy({k: v for k, v in message.items() if k not in ("reply_users", "reply_users_count")})


def _api_view(message: dict[str, Any]) -> dict[str, Any]:
    """A stored message as the Web API spec's message object allows (no app_id, no team)."""
    return copy.deepcopy({k: v for k, v in message.items() if k not in ("app_id", "team", "client_msg_id")})


def _blocks(value: Any) -> list[dict[str, Any]] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _SlackError("invalid_blocks") from None
    if not isinstance(value, list) or not all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in value):
        raise _SlackError("invalid_blocks")
    # Slack keeps a block_id it is given (and returns it with the message): a string of at most
    # 255 characters, unique within the message.
    block_ids = [b["block_id"] for b in value if "block_id" in b]
    if len(set(map(str, block_ids))) != len(block_ids) or not all(
        isinstance(i, str) and 0 < len(i) <= MAX_BLOCK_ID for i in block_ids
    ):
        raise _SlackError("invalid_blocks")
    return value


def _ts_param(params: dict[str, Any], name: str, error: str) -> Decimal | None:
    """A message-ts parameter (`oldest`, `latest`) as a number; absent or empty: None."""
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise _SlackError(error) from None
    if not number.is_finite():
        raise _SlackError(error)
    return number


def _bearer(value: str | None) -> str | None:
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return None


async def _body_params(request: web.Request, content_type: str | None) -> dict[str, Any]:
    if content_type is None:
        return {}
    if content_type.startswith("multipart/"):
        return {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    raw = await request.read()
    if content_type == "application/json":
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise _SlackError("invalid_json") from None
        if not isinstance(body, dict):
            raise _SlackError("json_not_object")
        return body
    if content_type == "application/x-www-form-urlencoded":
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    raise _SlackError("invalid_form_data")


def _slack_error(code: str, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"ok": False, "error": code}, status=status, headers=headers)
