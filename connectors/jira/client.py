"""A small async client for the Jira Cloud REST API v3: the two calls threadlink needs.

HTTP status becomes a ConnectorError in one place (`connectors.errors.classify_response`);
messages name the call and the status, never the token or the response body.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx

from connectors.errors import FatalError, NotFoundError, classify_response, classify_transport_error
from connectors.jira.config import JiraConfig

#: The fields of an issue that a TicketRecord is made of (see mapping.ticket_from_issue).
ISSUE_FIELDS = "summary,status,assignee,priority,project,updated"

# A project key (letters, digits, underscores, starting with a letter) and a number, or the
# numeric issue id. Anything else cannot name an issue, and must not reach the URL path.
_ISSUE_KEY = re.compile(r"^(?:[A-Za-z][A-Za-z0-9_]*-\d+|\d+)$")


def is_issue_key(value: str) -> bool:
    return bool(_ISSUE_KEY.match(value))


class JiraClient:
    """Lifecycle: built with the connector; `aclose()` once when the sink stops. Safe to use
    from concurrent tasks on one event loop (one pooled httpx.AsyncClient)."""

    def __init__(self, config: JiraConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(
            base_url=config.base_url,
            auth=httpx.BasicAuth(config.email, config.api_token.get_secret_value()),
            headers={"Accept": "application/json"},
            timeout=httpx.Timeout(config.request_timeout_s),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get_issue(self, key: str) -> dict[str, Any]:
        """The issue with the fields a TicketRecord needs. NotFoundError when it does not exist
        or the account may not see it (Jira answers 404 for both)."""
        what = "jira GET issue"
        if not is_issue_key(key):
            raise NotFoundError(f"{what}: {key!r} is not a Jira issue key")
        return await self._call(
            "GET", f"/rest/api/3/issue/{quote(key, safe='')}", what, params={"fields": ISSUE_FIELDS}
        )

    async def add_comment(self, key: str, body_adf: dict[str, Any]) -> dict[str, Any]:
        """Add a comment; `body_adf` is an Atlassian Document Format doc (v3 accepts nothing else).
        Returns Jira's Comment (with its `id`)."""
        what = "jira POST comment"
        if not is_issue_key(key):
            raise NotFoundError(f"{what}: {key!r} is not a Jira issue key")
        return await self._call(
            "POST", f"/rest/api/3/issue/{quote(key, safe='')}/comment", what, json={"body": body_adf}
        )

    async def myself(self) -> dict[str, Any]:
        """The account the credentials belong to: a cheap check that they work."""
        return await self._call("GET", "/rest/api/3/myself", "jira GET myself")

    async def _call(self, method: str, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise classify_transport_error(exc, what=what) from exc
        classify_response(response, what=what)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            # A 2xx that is not a JSON object is not Jira (a proxy's login page, a wrong base_url).
            raise FatalError(
                f"{what}: HTTP {response.status_code} but not a JSON object; is base_url a Jira site?",
                status=response.status_code,
            )
        return payload
