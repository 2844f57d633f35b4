"""A small async client for the Slack Web API: the methods threadlink calls.

Requests are form-encoded POSTs, as the Web API spec's `formData` parameters describe (`blocks`
is a JSON string); conversations.replies is a GET with query parameters, the one verb the spec
documents for it. The token travels in the Authorization header, never in a URL or a body.

Every answer becomes a ConnectorError in one place (`raise_for_slack`): HTTP status through
`connectors.errors.classify_response`, then Slack's own `{"ok": false, "error": ...}` codes.
Messages name the method and Slack's error code, never the token or the response body.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Literal

import httpx

from connectors import errors
from connectors.errors import (
    AuthError,
    BackpressureError,
    ConnectorError,
    FatalError,
    RetriableError,
    SkippableError,
    classify_transport_error,
    json_object,
    parse_retry_after,
)
from connectors.slack.config import SlackConfig

log = logging.getLogger(__name__)

#: Slack asks us to slow down. `ratelimited` is what the API sends; `rate_limited` is how the
#: Web API spec's error enums spell it.
RATE_LIMITED = frozenset({"ratelimited", "rate_limited"})
#: The token or the app is wrong: no command will succeed until someone fixes the credential
#: (the sink pauses until it works again).
AUTH = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "missing_scope",
        "no_permission",
    }
)
#: This one message cannot be posted or updated (gone, archived, too long, ...): skip it.
SKIPPABLE = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "msg_too_long",
        "invalid_blocks",
        "message_not_found",
        "cant_update_message",
        "cant_delete_message",
        "compliance_exports_prevent_deletion",
        "already_reacted",
        "too_many_reactions",
        "invalid_name",
    }
)
#: Slack's own transient failures ("likely due to a transient issue on our end"): worth another try.
TRANSIENT = frozenset({"internal_error", "service_unavailable"})

# Slack's error codes are short snake_case words; anything else is not echoed into messages.
_ERROR_CODE = re.compile(r"^[a-z0-9_.]{1,64}$")


def raise_for_slack(response: httpx.Response, *, method: str) -> dict[str, Any]:
    """The JSON body of a successful call, or the ConnectorError its answer means."""
    what = f"slack {method}"
    payload = json_object(response, what=what, hint="is api_base_url the Web API?")
    if payload.get("ok") is True:
        return payload
    raw = payload.get("error")
    code = raw if isinstance(raw, str) and _ERROR_CODE.match(raw) else "unexpected_error"
    message = f"{what}: {code}"
    status = response.status_code
    if code in RATE_LIMITED:
        raise BackpressureError(
            message, status=status, retry_after=parse_retry_after(response.headers.get("Retry-After"))
        )
    if code in TRANSIENT:
        raise TransientAnswer(
            message, status=status, retry_after=parse_retry_after(response.headers.get("Retry-After"))
        )
    if code in SKIPPABLE:
        raise SkippableError(message, status=status)
    if code in AUTH:
        raise AuthError(message, status=status)
    # Every code we do not know: retrying the same call will not change Slack's mind.
    raise FatalError(message, status=status)


class TransientAnswer(RetriableError):
    """Slack answered with one of its TRANSIENT codes: worth another try, and its outcome unknown
    (`internal_error`: "it's possible some aspect of the operation succeeded")."""


class PostedWithoutTs(FatalError):
    """chat.postMessage answered `ok` without a `ts`: the message is most likely posted, but
    there is no id to record. Retrying would post it again, so this is fatal, and its outcome
    unknown (`outcome_unknown`)."""


def outcome_unknown(error: ConnectorError) -> bool:
    """Whether a call that failed with `error` may nevertheless have been carried out by Slack,
    so that doing it again could do it twice (chat.postMessage has no idempotency key).

    `connectors.errors.outcome_unknown` (a 5xx, or a transport failure once the request could
    have left), plus two answers only Slack gives: its transient ok:false codes
    (`TransientAnswer`) and an ok answer without `ts` (`PostedWithoutTs`).
    """
    return isinstance(error, TransientAnswer | PostedWithoutTs) or errors.outcome_unknown(error)


class SlackClient:
    """Lifecycle: built with the connector and shared by its source and sink. The pooled
    httpx.AsyncClient is opened on first use; `aclose()` closes it (a later call opens a new
    one, so closing from both the source and the sink is safe). Safe to use from concurrent
    tasks on one event loop.
    """

    def __init__(self, config: SlackConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._config = config
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None or self._http.is_closed:
            self._http = httpx.AsyncClient(
                base_url=self._config.api_base_url,
                headers={
                    "Authorization": f"Bearer {self._config.bot_token.get_secret_value()}",
                    "Accept": "application/json",
                },
                timeout=httpx.Timeout(self._config.request_timeout_s),
                # As many pooled connections as the sink has calls in flight: none opened per call.
                limits=httpx.Limits(
                    max_connections=self._config.max_concurrency,
                    max_keepalive_connections=self._config.max_concurrency,
                ),
                transport=self._transport,
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    async def auth_test(self) -> dict[str, Any]:
        """Who the token belongs to: `user_id`, `bot_id` (bot tokens), `team_id`, ..."""
        return await self.call("auth.test", {})

    async def post_message(
        self,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        *,
        unfurl_links: bool = False,
    ) -> dict[str, Any]:
        """chat.postMessage; `text` is the notification/fallback text when `blocks` are given.
        Returns Slack's answer (`channel`, `ts`, `message`)."""
        params: dict[str, Any] = {"channel": channel, "text": text, "unfurl_links": unfurl_links}
        if blocks is not None:
            params["blocks"] = blocks
        if thread_ts is not None:
            params["thread_ts"] = thread_ts
        answer = await self.call("chat.postMessage", params)
        if not isinstance(answer.get("ts"), str) or not answer["ts"]:
            raise PostedWithoutTs(
                "slack chat.postMessage: Slack answered ok but without the message's ts, so the message "
                "is probably posted but cannot be recorded; not retried. Look in the thread before "
                "replaying this command.",
                status=200,
            )
        return answer

    async def update_message(
        self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """chat.update of a message this bot posted. Returns Slack's answer (`channel`, `ts`, `text`)."""
        params: dict[str, Any] = {"channel": channel, "ts": ts, "text": text}
        if blocks is not None:
            params["blocks"] = blocks
        return await self.call("chat.update", params)

    async def add_reaction(self, channel: str, ts: str, name: str) -> dict[str, Any]:
        """reactions.add of `name` (without colons) to the message `ts` (scope reactions:write)."""
        return await self.call("reactions.add", {"channel": channel, "timestamp": ts, "name": name})

    async def delete_message(self, channel: str, ts: str) -> dict[str, Any]:
        """chat.delete of a message this bot posted. Returns Slack's answer (`channel`, `ts`)."""
        return await self.call("chat.delete", {"channel": channel, "ts": ts})

    async def conversation_replies(
        self,
        channel: str,
        ts: str,
        *,
        limit: int = 200,
        cursor: str | None = None,
        oldest: str | None = None,
    ) -> dict[str, Any]:
        """conversations.replies: one page of the thread whose root is `ts`, oldest first
        (`messages`; the next page's cursor in `response_metadata.next_cursor`). With `oldest`
        (a message ts), only the replies after that message. Needs the channels:history scope
        (groups:, im:, mpim:history for private conversations)."""
        params: dict[str, Any] = {"channel": channel, "ts": ts, "limit": limit}
        if oldest:
            params["oldest"] = oldest
        if cursor:
            params["cursor"] = cursor
        return await self.call("conversations.replies", params, http_method="GET")

    async def conversation_history(
        self,
        channel: str,
        *,
        oldest: str | None = None,
        latest: str | None = None,
        cursor: str | None = None,
        limit: int = 200,
    ) -> dict[str, Any]:
        """conversations.history: one page of a channel's top-level messages between `oldest`
        and `latest` (exclusive), newest first; `has_more`, and the next page's cursor in
        `response_metadata.next_cursor` where Slack gives one. Needs channels:history."""
        params: dict[str, Any] = {"channel": channel, "limit": limit}
        for name, value in (("oldest", oldest), ("latest", latest), ("cursor", cursor)):
            if value:
                params[name] = value
        return await self.call("conversations.history", params, http_method="GET")

    async def conversation_info(self, channel: str) -> dict[str, Any]:
        """conversations.info: the channel's kind (`is_private`, `is_im`, `is_mpim`,
        `is_ext_shared`, ...). Needs channels:read (groups:, im:, mpim:read)."""
        return await self.call("conversations.info", {"channel": channel}, http_method="GET")

    async def permalink(self, channel: str, message_ts: str) -> str:
        """chat.getPermalink: Slack's own link to message `message_ts` (a reply's carries its
        thread). Unlike the one threadlink builds from the workspace URL, it is right on
        Enterprise Grid and in Slack Connect channels. No scope needed; a GET, as the spec documents."""
        answer = await self.call("chat.getPermalink", {"channel": channel, "message_ts": message_ts}, http_method="GET")
        link = answer.get("permalink")
        if not isinstance(link, str) or not link.startswith("https://"):
            raise FatalError("slack chat.getPermalink: Slack answered ok without an https permalink", status=200)
        return link

    async def call(
        self, method: str, params: dict[str, Any], *, http_method: Literal["GET", "POST"] = "POST"
    ) -> dict[str, Any]:
        """Call one Web API method: `params` form-encoded in a POST body, or as a GET's query
        (lists/dicts become JSON strings, booleans `true`/`false`, as the Web API expects)."""
        try:
            if http_method == "GET":
                response = await self._client().get(method, params=_form(params))
            else:
                response = await self._client().post(method, data=_form(params))
        except httpx.TransportError as exc:
            raise classify_transport_error(exc, what=f"slack {method}") from exc
        try:
            return raise_for_slack(response, method=method)
        except ConnectorError as exc:
            log.debug("slack %s failed: %s (%s)", method, exc, exc.kind)
            raise


def _form(params: dict[str, Any]) -> dict[str, str]:
    form: dict[str, str] = {}
    for name, value in params.items():
        if isinstance(value, bool):
            form[name] = "true" if value else "false"
        elif isinstance(value, list | dict):
            form[name] = json.dumps(value, separators=(",", ":"))
        else:
            form[name] = str(value)
    return form
