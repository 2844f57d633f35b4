"""Configuration of one Jira Cloud site."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from schemas.visibility import Visibility


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
    webhook_secret: SecretStr = Field(
        description=(
            "Secret set on the Jira admin webhook (System > WebHooks > Secret). Jira signs each delivery "
            "with it (X-Hub-Signature); deliveries that do not match are answered 401."
        )
    )
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

    def visibility_of(self, project: str | None) -> Visibility:
        """The visibility of a project's records (unknown project: default_visibility)."""
        if project is None:
            return self.default_visibility
        return self.project_visibility.get(project, self.default_visibility)
