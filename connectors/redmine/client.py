"""A small async client for Redmine's REST API: the calls threadlink needs.

Auth is the `X-Redmine-API-Key` header. HTTP status becomes a ConnectorError in one place
(`connectors.errors.classify_response`: 401/403 fatal (AuthError), 429/5xx retriable, 404
NotFoundError); Redmine's 422 (the issue or note failed validation: no such project, tracker
or status, a blank subject) is this one record's problem, so it is skippable, with Redmine's
own messages. Messages never carry the key.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import httpx

from connectors.errors import (
    FatalError,
    NotFoundError,
    SkippableError,
    classify_response,
    classify_transport_error,
    count_api_call,
    json_object,
)
from connectors.redmine.config import RedmineConfig

_ISSUE_ID = re.compile(r"^[1-9][0-9]{0,9}$")
API_KEY_HEADER = "X-Redmine-API-Key"
HINT = "is base_url a Redmine site with the REST API enabled?"


def is_issue_id(value: str) -> bool:
    return bool(_ISSUE_ID.match(value))


def redmine_time(moment: datetime) -> str:
    """The form Redmine's `updated_on` filter takes: `2024-01-17T12:34:00Z` (seconds, UTC)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class RedmineClient:
    """Lifecycle: built with the connector; `aclose()` once when the part using it stops. Safe to
    use from concurrent tasks on one event loop (one pooled httpx.AsyncClient)."""

    def __init__(self, config: RedmineConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(
            base_url=config.base_url,
            headers={API_KEY_HEADER: config.api_key.get_secret_value(), "Accept": "application/json"},
            timeout=httpx.Timeout(config.request_timeout_s),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def issues_updated_since(self, since: str, *, project: str | None, offset: int, limit: int) -> dict[str, Any]:
        """One page of the issues (open and closed) updated at or after `since`, oldest first:
        `issues`, `total_count`, `offset`, `limit`."""
        params: dict[str, Any] = {
            "status_id": "*",
            "updated_on": f">={since}",
            "sort": "updated_on,id",
            "offset": offset,
            "limit": limit,
        }
        if project:
            params["project_id"] = project
        return await self._call("GET", "/issues.json", "redmine GET issues", params=params)

    async def find_by_subject(self, text: str, *, project: str) -> list[dict[str, Any]]:
        """Issues of `project` (open and closed) whose subject contains `text`."""
        params = {"status_id": "*", "project_id": project, "subject": f"~{text}", "sort": "id", "limit": 5}
        found = await self._call("GET", "/issues.json", "redmine GET issues", params=params)
        issues = found.get("issues")
        return [i for i in issues if isinstance(i, dict)] if isinstance(issues, list) else []

    async def get_issue(self, issue_id: str, *, journals: bool = False) -> dict[str, Any]:
        """The issue (`include=journals`: with its journals). NotFoundError when it does not exist
        or the user may not see it (Redmine answers 404 for both, or 403 for a private one)."""
        what = "redmine GET issue"
        if not is_issue_id(issue_id):
            raise NotFoundError(f"{what}: {issue_id!r} is not a Redmine issue number")
        params = {"include": "journals"} if journals else None
        issue = (await self._call("GET", f"/issues/{issue_id}.json", what, params=params)).get("issue")
        if not isinstance(issue, dict):
            raise FatalError(f"{what}: answer without an issue; {HINT}")
        return issue

    async def create_issue(self, fields: dict[str, Any]) -> dict[str, Any]:
        """POST /issues.json; returns the created issue (with its `id`)."""
        what = "redmine POST issues"
        issue = (await self._call("POST", "/issues.json", what, json={"issue": fields})).get("issue")
        if not isinstance(issue, dict) or not isinstance(issue.get("id"), int):
            raise SkippableError(f"{what}: answered without the new issue's id")
        return issue

    async def add_note(self, issue_id: str, notes: str, *, private: bool = False) -> None:
        """PUT /issues/N.json with the note; Redmine answers 204 without a body."""
        what = "redmine PUT issue"
        if not is_issue_id(issue_id):
            raise NotFoundError(f"{what}: {issue_id!r} is not a Redmine issue number")
        body = {"issue": {"notes": notes, "private_notes": private}}
        response = await self._send("PUT", f"/issues/{issue_id}.json", what, json=body)
        self._classify(response, what)

    async def current_user(self) -> dict[str, Any]:
        """The user the API key belongs to: a cheap check that it works."""
        user = (await self._call("GET", "/users/current.json", "redmine GET users/current")).get("user")
        return user if isinstance(user, dict) else {}

    async def _send(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise classify_transport_error(exc, what=what) from exc

    def _classify(self, response: httpx.Response, what: str) -> None:
        if response.status_code == 422:
            count_api_call(what, "422")
            raise SkippableError(f"{what}: HTTP 422 ({'; '.join(_errors(response))})", status=422)
        classify_response(response, what=what)

    async def _call(self, method: str, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        response = await self._send(method, path, what, **kwargs)
        if response.status_code == 422:
            self._classify(response, what)
        return json_object(response, what=what, hint=HINT)


def _errors(response: httpx.Response) -> list[str]:
    """Redmine's validation messages (`{"errors": [...]}`): about fields, never credentials."""
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return ["no details"]
    return [str(e)[:200] for e in errors[:5]] if isinstance(errors, list) else ["no details"]
