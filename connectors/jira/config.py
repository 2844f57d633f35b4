"""Configuration of one Jira Cloud site."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from schemas.visibility import Visibility


class JiraPolling(BaseModel):
    """Asking Jira for changed issues (a JQL search), beside webhooks or instead of them: for a
    site that cannot reach threadlink, and to catch up what webhooks missed (Jira gives up on a
    delivery after a few retries)."""

    model_config = ConfigDict(extra="forbid")

    jql: str = Field(
        default="",
        max_length=2000,
        description="Which issues, as a JQL condition, e.g. 'project in (OPS, WEB)'; empty: every issue the "
        "account can see. threadlink adds the time condition and the order.",
    )
    interval_s: float = Field(default=60.0, ge=5, description="Seconds between two polls.")
    page_size: int = Field(default=50, ge=1, le=100, description="Issues per page (Jira returns at most 100).")
    max_pages_per_poll: int = Field(
        default=5, ge=1, le=100, description="Pages one poll reads at most; a backlog continues at once in the next."
    )
    since: datetime | None = Field(
        default=None,
        description="Where polling with no checkpoint starts: issues updated at or after it are published (a "
        "backfill). Unset: from the moment it first polls.",
    )

    @field_validator("jql")
    @classmethod
    def _no_order(cls, value: str) -> str:
        if "order by" in value.lower():
            raise ValueError("leave out ORDER BY: threadlink orders by updated time to keep its cursor")
        return value.strip()


class CardField(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$",
        description="The Jira field id, e.g. customfield_10010, duedate, components (Settings ▸ Issues ▸ "
        "Custom fields).",
    )
    label: str = Field(min_length=1, max_length=40, description="What the card calls it, e.g. Team.")


class JiraFields(BaseModel):
    """Which Jira fields fill a ticket's status, assignee and priority, and which more a card
    shows (a value, a name, a user, an option, or a list of them)."""

    model_config = ConfigDict(extra="forbid")

    status: str = Field(default="status", description="The field of the ticket's status.")
    assignee: str = Field(default="assignee", description="The field of the person the ticket is with.")
    priority: str = Field(default="priority", description="The field of its priority, e.g. a custom Severity.")
    shown: list[CardField] = Field(
        default_factory=list, max_length=5, description="More fields the card shows, after those three."
    )

    def requested(self) -> list[str]:
        """The fields threadlink asks Jira for beyond the ones it always reads."""
        return [self.status, self.assignee, self.priority, *(shown.field for shown in self.shown)]


class JiraConfig(BaseModel):
    """One Jira Cloud site.

    Example (threadlink.yaml; secrets better from the environment, e.g.
    THREADLINK_CONNECTORS__JIRA__API_TOKEN and THREADLINK_CONNECTORS__JIRA__WEBHOOK_SECRET)::

        connectors:
          jira:
            base_url: https://acme.atlassian.net
            email: threadlink-bot@acme.com
            project_visibility: {OPS: restricted, WEB: public}
    """

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(
        description="The site's address, e.g. https://acme.atlassian.net (http(s); a trailing slash is ignored)."
    )
    email: str = Field(
        min_length=1,
        description="Email of the Atlassian account threadlink acts as; REST v3 Basic auth is email:api_token.",
    )
    api_token: SecretStr = Field(
        description="API token of that account (https://id.atlassian.com/manage-profile/security/api-tokens)."
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Secret set on the Jira admin webhook (System > WebHooks > Secret). Jira signs each delivery "
            "with it (X-Hub-Signature); deliveries that do not match are answered 401. Unset: no webhook "
            "is served (then set polling)."
        ),
    )
    polling: JiraPolling | None = Field(
        default=None, description="Poll changed issues with JQL (beside webhooks, or instead of them)."
    )
    fields: JiraFields = Field(default_factory=JiraFields, description="Which Jira fields a ticket's card shows.")
    project_visibility: dict[str, Visibility] = Field(
        default_factory=dict,
        description="How widely records of each project (by key, e.g. OPS) may be shown; others: default_visibility.",
    )
    default_visibility: Visibility = Field(
        default="internal", description="Visibility of records in projects not listed in project_visibility."
    )
    comment_backlinks: bool = Field(
        default=True, description="Post a 'Discussed in <thread>' comment on an issue when a thread links to it."
    )
    remote_links: bool = Field(
        default=True,
        description="With a back-link comment, also link the issue to the thread (a remote issue link, shown "
        "under 'Web links'; one per thread, updated rather than repeated). Needs the Link issues permission.",
    )
    issue_type: str = Field(
        default="Task", min_length=1, description="The issue type of the tickets threadlink opens (Escalate)."
    )
    request_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one REST call, in seconds.")
    requests_per_s: float = Field(
        default=10, gt=0, description="REST calls per second the sink makes (Jira Cloud limits by account)."
    )
    writes_per_issue_per_s: float = Field(
        default=1, gt=0, description="Comments written to one issue per second (Jira throttles writes per issue)."
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) address such as https://acme.atlassian.net")
        return value

    @model_validator(mode="after")
    def _some_source(self) -> JiraConfig:
        if self.webhook_secret is None and self.polling is None:
            raise ValueError("set webhook_secret (to receive Jira's webhooks), polling (to ask Jira), or both")
        return self

    def visibility_of(self, project: str | None) -> Visibility:
        """The visibility of a project's records (unknown project: default_visibility)."""
        if project is None:
            return self.default_visibility
        return self.project_visibility.get(project, self.default_visibility)
