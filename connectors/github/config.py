"""Configuration of one GitHub (github.com, or GitHub Enterprise Server) account."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from schemas.visibility import Visibility


def _http_url(value: str, example: str) -> str:
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http(s) address such as {example}")
    return value


class GitHubConfig(BaseModel):
    """One GitHub account threadlink acts as, and the webhook that tells it about issues.

    Example (threadlink.yaml; secrets better from the environment, e.g.
    THREADLINK_CONNECTORS__GITHUB__TOKEN and THREADLINK_CONNECTORS__GITHUB__WEBHOOK_SECRET)::

        connectors:
          github:
            bot_login: threadlink-bot
            write_owners: [acme]
            repo_visibility: {acme/website: public, acme/security: restricted}
    """

    model_config = ConfigDict(extra="forbid")

    api_url: str = Field(
        default="https://api.github.com",
        description="REST API root: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server.",
    )
    token: SecretStr = Field(
        description=(
            "A fine-grained personal access token (or a GitHub App installation token) with the repository "
            "permission Issues: read and write; sent as `Authorization: Bearer <token>`."
        )
    )
    webhook_secret: SecretStr = Field(
        description=(
            "The webhook's Secret (repository or organisation Settings > Webhooks). GitHub signs each delivery "
            "with it (X-Hub-Signature-256); deliveries that do not match are answered 401."
        )
    )
    bot_login: str | None = Field(
        default=None,
        description="The login the token belongs to: comments by it are threadlink's own and never mirrored back.",
    )
    repo_visibility: dict[str, Visibility] = Field(
        default_factory=dict,
        description=(
            "How widely the issues of a repository (owner/repo) may be shown, overriding what GitHub says "
            "(a public repository's issues are public, a private one's private_visibility)."
        ),
    )
    private_visibility: Literal["internal", "restricted"] = Field(
        default="internal", description="Visibility of the issues of private and internal repositories."
    )
    default_visibility: Visibility = Field(
        default="internal",
        description=(
            "Visibility of issues looked up over REST in repositories not listed in repo_visibility (an issue "
            "answer does not say whether its repository is public; webhooks do)."
        ),
    )
    write_owners: list[str] = Field(
        default_factory=list,
        description=(
            "Owners (organisations or users) whose repositories threadlink comments on and opens issues in; "
            "issues elsewhere are still looked up and shown, never written to (no back-link to a thread on "
            "someone else's public issue). Empty: any repository the token may write to."
        ),
    )
    comment_backlinks: bool = Field(
        default=True, description="Post a 'Discussed in <thread>' comment on an issue when a thread links to it."
    )
    request_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one REST call, in seconds.")
    requests_per_s: float = Field(
        default=1.0,
        gt=0,
        description="REST calls per second the sink makes (GitHub allows 5,000 an hour per token: 1.39/s).",
    )
    writes_per_s: float = Field(
        default=0.1,
        gt=0,
        description=(
            "Issues and comments created per second (GitHub's secondary limit: 80 content-creating requests a "
            "minute and 500 an hour)."
        ),
    )
    find_scan_limit: int = Field(
        default=300,
        ge=0,
        le=3000,
        description=(
            "Before opening a thread's issue, how many of the repository's newest issues are searched for the "
            "thread's marker when its label is not found (labels are dropped for accounts without push access)."
        ),
    )
    max_rate_limit_wait_s: float = Field(
        default=3600, gt=0, description="The longest a rate-limited call waits for x-ratelimit-reset, in seconds."
    )
    redelivery_window_s: float = Field(
        default=900,
        ge=0,
        description=(
            "At start, deliveries published this many seconds back are read from Kafka, to recognise redeliveries."
        ),
    )

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        return _http_url(value, "https://api.github.com")

    @field_validator("repo_visibility")
    @classmethod
    def _repo_names(cls, value: dict[str, Visibility]) -> dict[str, Visibility]:
        bad = [name for name in value if name.count("/") != 1 or not all(name.split("/"))]
        if bad:
            raise ValueError(f"keys must be owner/repo, not {', '.join(repr(b) for b in bad)}")
        return {name.lower(): visibility for name, visibility in value.items()}

    @field_validator("write_owners")
    @classmethod
    def _owners(cls, value: list[str]) -> list[str]:
        bad = [owner for owner in value if not owner or "/" in owner or owner != owner.strip()]
        if bad:
            raise ValueError(f"owners are logins such as acme, not {', '.join(repr(b) for b in bad)}")
        return [owner.lower() for owner in value]

    def may_write(self, owner: str) -> bool:
        """Whether threadlink writes (comments, issues) to repositories of `owner`."""
        return not self.write_owners or owner.lower() in self.write_owners

    def visibility_of(self, repo: str | None, *, private: bool | None = None) -> Visibility:
        """The visibility of a repository's issues: configured, else from its privacy when
        known (a webhook says), else default_visibility."""
        configured = self.repo_visibility.get(repo.lower()) if repo else None
        if configured is not None:
            return configured
        if private is None:
            return self.default_visibility
        return self.private_visibility if private else "public"
