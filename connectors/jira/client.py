"""A small async client for the Jira Cloud REST API v3: the calls threadlink needs.

HTTP status becomes a ConnectorError in one place (`connectors.errors.classify_response`);
messages name the call and the status, never the token or the response body. Whether a failed
call may still have been carried out by Jira is decided there too
(`connectors.errors.outcome_unknown`): Jira has no answers of its own that leave it open.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from connectors.errors import NotFoundError, classify_transport_error, json_object
from connectors.jira.config import JiraConfig

#: The fields of an issue that a TicketRecord is made of (see mapping.ticket_from_issue).
ISSUE_FIELDS = ["summary", "status", "assignee", "priority", "project", "labels", "updated"]

# A project key (letters, digits, underscores, starting with a letter) and a number, or the
# numeric issue id. Anything else cannot name an issue, and must not reach the URL path.
_ISSUE_KEY = re.compile(r"^(?:[A-Za-z][A-Za-z0-9_]*-\d+|\d+)$")


#: Comments asked for per page when listing an issue's comments (Jira may answer fewer).
COMMENT_PAGE_SIZE = 100


def is_issue_key(value: str) -> bool:
    return bool(_ISSUE_KEY.match(value))


class JiraClient:
    """Lifecycle: built with the connector; `aclose()` once when the sink stops. Safe to use
    from concurrent tasks on one event loop (one pooled httpx.AsyncClient)."""

    def __init__(self, config: JiraConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._config = config
        self._http = httpx.AsyncClient(
            base_url=config.base_url,
            auth=httpx.BasicAuth(config.email, config.api_token.get_secret_value()),
            headers={"Accept": "application/json"},
            timeout=httpx.Timeout(config.request_timeout_s),
            transport=transport,
        )

    @property
    def issue_fields(self) -> list[str]:
        """What a record needs of an issue: the usual fields and those the config maps."""
        return list(dict.fromkeys([*ISSUE_FIELDS, *self._config.fields.requested()]))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get_issue(self, key: str) -> dict[str, Any]:
        """The issue with the fields a TicketRecord needs. NotFoundError when it does not exist
        or the account may not see it (Jira answers 404 for both)."""
        what = "jira GET issue"
        if not is_issue_key(key):
            raise NotFoundError(f"{what}: {key!r} is not a Jira issue key")
        return await self._call(
            "GET", f"/rest/api/3/issue/{quote(key, safe='')}", what, params={"fields": ",".join(self.issue_fields)}
        )

    async def add_comment(
        self, key: str, body_adf: dict[str, Any], *, properties: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Add a comment; `body_adf` is an Atlassian Document Format doc (v3 accepts nothing else).
        `properties` become the comment's entity properties (key -> JSON value), stored with it
        in the same request. Returns Jira's Comment (with its `id`)."""
        what = "jira POST comment"
        if not is_issue_key(key):
            raise NotFoundError(f"{what}: {key!r} is not a Jira issue key")
        payload: dict[str, Any] = {"body": body_adf}
        if properties:
            payload["properties"] = [{"key": k, "value": v} for k, v in properties.items()]
        return await self._call("POST", f"/rest/api/3/issue/{quote(key, safe='')}/comment", what, json=payload)

    async def recent_comments(self, key: str, *, limit: int) -> AsyncGenerator[dict[str, Any], None]:
        """The issue's comments, newest first, each with its entity properties (`properties`:
        a list of {key, value}); at most `limit` of them. Pages through `startAt`/`maxResults`.

        Newest first, so comments added while paging push older ones to later pages (seen twice
        at worst, never skipped). The spec documents the `properties` expand on `POST
        /rest/api/3/comment/list` only; when the listing leaves it out, that call fills it in.
        Close the generator when leaving early (`contextlib.aclosing`)."""
        what = "jira GET comments"
        if not is_issue_key(key):
            raise NotFoundError(f"{what}: {key!r} is not a Jira issue key")
        start_at = 0
        while start_at < limit:
            page = await self._call(
                "GET",
                f"/rest/api/3/issue/{quote(key, safe='')}/comment",
                what,
                params={
                    "startAt": start_at,
                    "maxResults": min(COMMENT_PAGE_SIZE, limit - start_at),
                    "orderBy": "-created",
                    "expand": "properties",
                },
            )
            items = page.get("comments")
            if not isinstance(items, list) or not items:
                return
            comments = [c for c in items if isinstance(c, dict)]
            if any("properties" not in c for c in comments):
                comments = await self._with_properties(comments)
            for comment in comments[: limit - start_at]:
                yield comment
            start_at += len(items)
            total = page.get("total")
            if isinstance(total, int) and start_at >= total:
                return

    async def _with_properties(self, comments: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The same comments as `POST /rest/api/3/comment/list?expand=properties` returns them."""
        ids = sorted({int(c["id"]) for c in comments if str(c.get("id", "")).isdigit()})
        if not ids:
            return comments
        page = await self._call(
            "POST",
            "/rest/api/3/comment/list",
            "jira POST comment/list",
            params={"expand": "properties"},
            json={"ids": ids},
        )
        values = page.get("values")
        by_id = {str(c.get("id")): c for c in values if isinstance(c, dict)} if isinstance(values, list) else {}
        return [by_id.get(str(c.get("id")), c) for c in comments]

    async def put_remote_link(self, key: str, link: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update a remote issue link (`globalId`, `object: {url, title}`, ...): Jira
        updates the issue's link with the same `globalId` instead of adding another. Returns
        Jira's RemoteIssueLinkIdentifies (`id`, `self`)."""
        what = "jira POST remotelink"
        if not is_issue_key(key):
            raise NotFoundError(f"{what}: {key!r} is not a Jira issue key")
        return await self._call("POST", f"/rest/api/3/issue/{quote(key, safe='')}/remotelink", what, json=dict(link))

    async def create_issue(
        self, fields: Mapping[str, Any], *, properties: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Create an issue from `fields` (project, summary, issuetype, description as ADF,
        labels, ...) with entity `properties` (key -> JSON value). Returns Jira's CreatedIssue
        (`id`, `key`, `self`)."""
        body: dict[str, Any] = {"fields": dict(fields)}
        if properties:
            body["properties"] = [{"key": key, "value": value} for key, value in properties.items()]
        return await self._call("POST", "/rest/api/3/issue", "jira POST issue", json=body)

    async def search(self, jql: str, *, fields: list[str], max_results: int = 50, start_at: int = 0) -> dict[str, Any]:
        """One page of a JQL search (POST /rest/api/3/search): `issues`, `total`."""
        body = {"jql": jql, "fields": fields, "maxResults": max_results, "startAt": start_at}
        return await self._call("POST", "/rest/api/3/search", "jira POST search", json=body)

    async def myself(self) -> dict[str, Any]:
        """The account the credentials belong to: a cheap check that they work."""
        return await self._call("GET", "/rest/api/3/myself", "jira GET myself")

    async def _call(self, method: str, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise classify_transport_error(exc, what=what) from exc
        return json_object(response, what=what, hint="is base_url a Jira site?")
