"""Configuration of one Redmine site."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from schemas.visibility import Visibility


class RedmineConfig(BaseModel):
    """One Redmine (4.x/5.x) site with its REST API enabled (Administration > Settings > API).

    Example (threadlink.yaml; the key better from the environment, e.g.
    THREADLINK_CONNECTORS__REDMINE__API_KEY)::

        connectors:
          redmine:
            base_url: https://redmine.acme.com
            projects: [ops, web]
            project_visibility: {web: public}
    """

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(
        description="The site's address, e.g. https://redmine.acme.com (http(s); a trailing slash is ignored)."
    )
    api_key: SecretStr = Field(
        description="API key of the Redmine user threadlink acts as (My account > API access key); sent as "
        "X-Redmine-API-Key."
    )
    projects: list[str] = Field(
        default_factory=list,
        description="Identifiers of the projects whose issues are polled (one poller and checkpoint each); "
        "empty: every project the user can see, in one poller.",
    )
    poll_interval_s: float = Field(default=30.0, ge=1, description="Seconds between two polls of one poller.")
    page_size: int = Field(default=100, ge=1, le=100, description="Issues per page (Redmine's maximum is 100).")
    max_pages_per_poll: int = Field(
        default=5, ge=1, le=100, description="Pages one poll reads at most; a backlog continues at once in the next."
    )
    since: datetime | None = Field(
        default=None,
        description="Where a poller with no checkpoint starts: issues updated at or after it are published "
        "(a backfill). Unset: from the moment it first polls.",
    )
    project_visibility: dict[str, Visibility] = Field(
        default_factory=dict,
        description="How widely records of each project (by identifier, name or numeric id) may be shown; "
        "others: default_visibility.",
    )
    default_visibility: Visibility = Field(
        default="internal", description="Visibility of records in projects not listed in project_visibility."
    )
    private_issue_visibility: Visibility = Field(
        default="restricted", description="Visibility of issues marked private in Redmine (is_private)."
    )
    private_notes_visibility: Visibility = Field(
        default="restricted",
        description="Visibility of private notes (private_notes); they are never public, whatever this says.",
    )
    comment_backlinks: bool = Field(
        default=True, description="Add a 'Discussed in <thread>' note to an issue when a thread links to it."
    )
    tracker_id: int | None = Field(
        default=None,
        ge=1,
        description="Tracker of the tickets threadlink opens (Escalate); unset: the project's default.",
    )
    request_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one REST call, in seconds.")
    requests_per_s: float = Field(default=5, gt=0, description="REST calls per second the sink makes.")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) address such as https://redmine.acme.com")
        return value

    def visibility_of(self, *names: str | None) -> Visibility:
        """The visibility of a project's records, the project named by any of `names`
        (identifier, name, id); an unknown project: default_visibility."""
        for name in names:
            if name is not None and name in self.project_visibility:
                return self.project_visibility[name]
        return self.default_visibility

    def issue_url(self, key: str) -> str:
        return f"{self.base_url}/issues/{key}"
