"""Configuration of one WordPress site."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from schemas.visibility import Visibility

PostType = Literal["posts", "pages"]
DEFAULT_TYPES: tuple[PostType, ...] = ("posts", "pages")


class WordPressConfig(BaseModel):
    """One WordPress (5.7+, for `modified_after`) site, through its REST API with an application
    password (Users > Profile > Application Passwords).

    Example (threadlink.yaml; the password better from the environment, e.g.
    THREADLINK_CONNECTORS__WORDPRESS__APP_PASSWORD)::

        connectors:
          wordpress:
            base_url: https://blog.acme.com
            username: threadlink
            types: [posts, pages]
    """

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(
        description="The site's address (its WordPress Address), e.g. https://blog.acme.com; the REST API is "
        "at <base_url>/wp-json unless api_root says otherwise."
    )
    api_root: str | None = Field(
        default=None,
        description="The REST API's root when it is not <base_url>/wp-json (e.g. https://acme.com/blog/wp-json).",
    )
    username: str = Field(min_length=1, description="Login of the WordPress user threadlink acts as.")
    app_password: SecretStr = Field(
        description="An application password of that user (spaces allowed, as WordPress shows it); sent with "
        "HTTP Basic auth. The user needs to edit posts (Editor) to read drafts and to write a thread's draft."
    )
    types: list[PostType] = Field(
        default_factory=lambda: list(DEFAULT_TYPES),
        min_length=1,
        description="What is polled: one poller and checkpoint per type.",
    )
    poll_interval_s: float = Field(default=60.0, ge=1, description="Seconds between two polls of one poller.")
    page_size: int = Field(default=50, ge=1, le=100, description="Posts per page (WordPress's maximum is 100).")
    max_pages_per_poll: int = Field(
        default=5, ge=1, le=100, description="Pages one poll reads at most; a backlog continues at once in the next."
    )
    since: datetime | None = Field(
        default=None,
        description="Where a poller with no checkpoint starts: posts modified at or after it are published "
        "(a backfill). Unset: from the moment it first polls.",
    )
    published_visibility: Visibility = Field(
        default="public",
        description="Visibility of published posts and pages without a password (anyone can read them on the site).",
    )
    unpublished_visibility: Literal["internal", "restricted"] = Field(
        default="internal",
        description="Visibility of drafts, pending, scheduled and private posts and of password-protected ones: "
        "never public.",
    )
    max_term_lookups: int = Field(
        default=200,
        ge=0,
        le=2000,
        description="Category and tag ids one poll resolves to names at most (100 per call); the rest are left out.",
    )
    draft_category: int | None = Field(
        default=None, ge=1, description="Category id of the drafts threadlink writes; unset: the site's default."
    )
    request_timeout_s: float = Field(default=15.0, gt=0, description="Timeout of one REST call, in seconds.")
    requests_per_s: float = Field(default=2, gt=0, description="REST calls per second the sink makes.")

    @field_validator("base_url", "api_root")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("must be an http(s) address such as https://blog.acme.com (no query, no fragment)")
        return value

    @field_validator("types")
    @classmethod
    def _distinct(cls, value: list[PostType]) -> list[PostType]:
        if len(set(value)) != len(value):
            raise ValueError("each type may be listed once")
        return value

    @property
    def rest_root(self) -> str:
        return self.api_root or f"{self.base_url}/wp-json"

    def post_url(self, key: str) -> str:
        """A post's or page's address that works whatever the permalink settings (WordPress
        redirects `?p=ID` to the permalink, and shows drafts there to those who may)."""
        return f"{self.base_url}/?p={key}"
