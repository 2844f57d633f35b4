"""A small async client for the Zendesk Support (Ticketing) API v2: the calls threadlink needs.

Documented formats followed (Zendesk's OpenAPI file could not be stored here, see
../shared/specs/zendesk/README.md):

- auth: https://developer.zendesk.com/api-reference/introduction/security-and-auth/ (an API token
  as Basic `<email>/token:<token>`, or an OAuth access token as `Bearer`);
- tickets: https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/ (`POST
  /api/v2/tickets.json`, `PUT /api/v2/tickets/{id}.json` with a `comment`, `GET
  /api/v2/tickets/{id}.json`, `GET /api/v2/tickets.json?external_id=`);
- comments: https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_comments/ (`GET
  /api/v2/tickets/{id}/comments.json`, cursor-paginated with `page[size]`);
- idempotency: https://developer.zendesk.com/api-reference/ticketing/introduction/#idempotency
  (`Idempotency-Key` on ticket creation; a replay within 2 hours answers the original response
  with `x-idempotency-lookup: hit`; the same key with another body is a 400);
- incremental export: https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/
  (`GET /api/v2/incremental/tickets/cursor.json?start_time=` then `?cursor=<after_cursor>`);
- rate limits: https://developer.zendesk.com/api-reference/introduction/rate-limits/ (a 429 with
  `Retry-After` in seconds).

HTTP status becomes a ConnectorError in one place (`classify_zendesk`): 429 backpressure with its
Retry-After, 409 (a concurrent update of the same ticket) and 5xx retriable, 401 a refused
credential (AuthError: the sink pauses), 403 fatal for that command (the agent may not do it),
404 NotFoundError, 422 skippable with Zendesk's reasons. Messages never carry a credential.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx

from connectors.errors import (
    FatalError,
    NotFoundError,
    RetriableError,
    SkippableError,
    classify_response,
    classify_transport_error,
    count_api_call,
    parse_retry_after,
)
from connectors.zendesk.config import ZendeskConfig
from connectors.zendesk.mapping import is_ticket_key

HINT = "is base_url the account's address (https://<subdomain>.zendesk.com)?"
IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_LOOKUP_HEADER = "x-idempotency-lookup"
#: Comments per page (Zendesk's cursor pagination allows 100).
COMMENTS_PAGE = 100


def authorization(config: ZendeskConfig) -> str:
    """The Authorization header value of the configured credential."""
    if config.oauth_token is not None:
        return f"Bearer {config.oauth_token.get_secret_value()}"
    assert config.email is not None and config.api_token is not None  # the config's validator says so
    pair = f"{config.email}/token:{config.api_token.get_secret_value()}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def classify_zendesk(response: httpx.Response, *, what: str) -> None:
    """Raise the right ConnectorError for a non-2xx Zendesk answer; return for 2xx."""
    status = response.status_code
    if status == 409:
        count_api_call(what, "409")
        wait = parse_retry_after(response.headers.get("Retry-After"))
        raise RetriableError(f"{what}: HTTP 409 (the ticket was being updated at once)", status=409, retry_after=wait)
    if status == 422:
        count_api_call(what, "422")
        raise SkippableError(f"{what}: HTTP 422 ({_details(response)})", status=422)
    if status == 403:
        count_api_call(what, "403")
        raise FatalError(
            f"{what}: HTTP 403 (the agent may not do this: check its role and the ticket's group)", status=403
        )
    if status == 400:
        count_api_call(what, "400")
        raise FatalError(f"{what}: HTTP 400 ({_details(response)})", status=400)
    classify_response(response, what=what)


def _details(response: httpx.Response) -> str:
    """Zendesk's error (`{"error": ..., "description": ..., "details": {field: [{description}]}}`):
    about fields and values, never credentials; cut short."""
    try:
        payload = response.json()
    except ValueError:
        return "no details"
    if not isinstance(payload, dict):
        return "no details"
    parts = [str(payload.get(name))[:100] for name in ("error", "description") if isinstance(payload.get(name), str)]
    details = payload.get("details")
    if isinstance(details, dict):
        for name, problems in list(details.items())[:5]:
            for problem in problems[:2] if isinstance(problems, list) else []:
                if isinstance(problem, dict) and isinstance(problem.get("description"), str):
                    parts.append(f"{str(name)[:40]}: {problem['description'][:120]}")
    return "; ".join(parts) or "no details"


class ZendeskClient:
    """Lifecycle: built with the part using it; `aclose()` once when it stops. Safe to use from
    concurrent tasks on one event loop (one pooled httpx.AsyncClient). No redirects are followed:
    the credential goes to base_url only."""

    def __init__(self, config: ZendeskConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(
            base_url=config.base_url,
            headers={
                "Authorization": authorization(config),
                "Accept": "application/json",
                "User-Agent": "threadlink",
            },
            timeout=httpx.Timeout(config.request_timeout_s),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def me(self) -> dict[str, Any]:
        """The user the credential belongs to (`GET /api/v2/users/me.json`)."""
        user = (await self._call("GET", "/api/v2/users/me.json", "zendesk GET users/me")).get("user")
        return user if isinstance(user, dict) else {}

    async def get_ticket(self, key: str) -> dict[str, Any]:
        what = "zendesk GET ticket"
        if not is_ticket_key(key):
            raise NotFoundError(f"{what}: {key[:40]!r} is not a Zendesk ticket number")
        return self._ticket(await self._call("GET", f"/api/v2/tickets/{key}.json", what), what)

    async def tickets_by_external_id(self, external_id: str) -> list[dict[str, Any]]:
        """`GET /api/v2/tickets.json?external_id=`: the tickets carrying it (Zendesk does not keep
        external ids unique), at most one page."""
        found = await self._call(
            "GET", "/api/v2/tickets.json", "zendesk GET tickets", params={"external_id": external_id}
        )
        tickets = found.get("tickets")
        return [t for t in tickets if isinstance(t, dict)] if isinstance(tickets, list) else []

    async def create_ticket(self, ticket: Mapping[str, Any], *, idempotency_key: str) -> tuple[dict[str, Any], bool]:
        """`POST /api/v2/tickets.json`; returns the ticket, and whether Zendesk answered it from
        its idempotency cache (an earlier attempt with this key made it)."""
        what = "zendesk POST tickets"
        response = await self._send(
            "POST",
            "/api/v2/tickets.json",
            what,
            json={"ticket": dict(ticket)},
            headers={IDEMPOTENCY_HEADER: idempotency_key},
        )
        payload = self._object(response, what)
        replayed = response.headers.get(IDEMPOTENCY_LOOKUP_HEADER, "").strip().lower() == "hit"
        return self._ticket(payload, what), replayed

    async def add_comment(self, key: str, body: str, *, public: bool) -> dict[str, Any]:
        """`PUT /api/v2/tickets/{id}.json` with `{"ticket": {"comment": {"body", "public"}}}`;
        returns the answer (`ticket` and the `audit` whose Comment event holds the comment's id)."""
        what = "zendesk PUT ticket"
        if not is_ticket_key(key):
            raise NotFoundError(f"{what}: {key[:40]!r} is not a Zendesk ticket number")
        body_json = {"ticket": {"comment": {"body": body, "public": public}}}
        return self._object(await self._send("PUT", f"/api/v2/tickets/{key}.json", what, json=body_json), what)

    async def comments(self, key: str, *, limit: int) -> AsyncGenerator[dict[str, Any], None]:
        """A ticket's comments, oldest first, at most `limit`, page after page by `meta.after_cursor`."""
        what = "zendesk GET comments"
        if not is_ticket_key(key):
            raise NotFoundError(f"{what}: {key[:40]!r} is not a Zendesk ticket number")
        params: dict[str, Any] = {"page[size]": min(COMMENTS_PAGE, max(1, limit))}
        seen = pages = 0
        while seen < limit and pages < limit:
            page = await self._call("GET", f"/api/v2/tickets/{key}/comments.json", what, params=params)
            pages += 1
            comments = page.get("comments")
            for comment in comments if isinstance(comments, list) else []:
                if isinstance(comment, dict) and seen < limit:
                    seen += 1
                    yield comment
            meta = page.get("meta")
            after = meta.get("after_cursor") if isinstance(meta, dict) and meta.get("has_more") is True else None
            if not isinstance(after, str) or not after or not comments:
                return
            params = {"page[size]": params["page[size]"], "page[after]": after}

    async def export_tickets(self, *, start_time: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """One page of the cursor-based incremental ticket export: from `start_time` (epoch
        seconds, at least a minute ago) or from an `after_cursor`."""
        params: dict[str, Any] = {"cursor": cursor} if cursor else {"start_time": start_time}
        return await self._call(
            "GET", "/api/v2/incremental/tickets/cursor.json", "zendesk GET incremental/tickets", params=params
        )

    # -- plumbing ------------------------------------------------------------------------------

    async def _send(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise classify_transport_error(exc, what=what) from exc
        classify_zendesk(response, what=what)
        return response

    async def _call(self, method: str, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        return self._object(await self._send(method, path, what, **kwargs), what)

    @staticmethod
    def _object(response: httpx.Response, what: str) -> dict[str, Any]:
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise FatalError(f"{what}: HTTP {response.status_code} but not a JSON object; {HINT}")
        return payload

    @staticmethod
    def _ticket(payload: dict[str, Any], what: str) -> dict[str, Any]:
        ticket = payload.get("ticket")
        if not isinstance(ticket, dict):
            raise FatalError(f"{what}: answer without a ticket; {HINT}")
        return ticket
