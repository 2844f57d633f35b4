"""Configuration of one Zendesk Support account (`https://<subdomain>.zendesk.com`)."""

from __future__ import annotations

from datetime import datetime
from typing import Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from schemas.visibility import Visibility


class ZendeskConfig(BaseModel):
    """One Zendesk account threadlink acts on, and the webhook that tells it about tickets.

    Auth is an API token (`email` + `api_token`, sent as Basic `<email>/token:<api_token>`) or an
    OAuth access token (`oauth_token`, sent as `Bearer`): exactly one of the two.

    Example (threadlink.yaml; secrets better from the environment, e.g.
    THREADLINK_CONNECTORS__ZENDESK__API_TOKEN and THREADLINK_CONNECTORS__ZENDESK__WEBHOOK_SECRET)::

        connectors:
          zendesk:
            base_url: https://acme.zendesk.com
            email: threadlink@acme.com
            requests_per_minute: 400
    """

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(
        description="The account's address, https://<subdomain>.zendesk.com (http(s); a trailing slash is ignored)."
    )
    email: str | None = Field(
        default=None,
        description="Email of the agent threadlink acts as; with api_token (Admin Center > Apps and "
        "integrations > Zendesk API).",
    )
    api_token: SecretStr | None = Field(
        default=None, description="A Zendesk API token; sent as Basic auth `<email>/token:<api_token>`."
    )
    oauth_token: SecretStr | None = Field(
        default=None,
        description="An OAuth access token (scopes tickets:read tickets:write users:read) instead of "
        "email and api_token; sent as `Authorization: Bearer`.",
    )
    webhook_secret: SecretStr = Field(
        description="The webhook's signing secret (Admin Center > Apps and integrations > Webhooks > the webhook > "
        "Reveal secret). Deliveries whose X-Zendesk-Webhook-Signature does not match are answered 401."
    )
    webhook_tolerance_s: float = Field(
        default=300,
        gt=0,
        le=3600,
        description="How far X-Zendesk-Webhook-Signature-Timestamp may be from now, in seconds; older (or later) "
        "deliveries are answered 401, so a captured one cannot be replayed later.",
    )
    poll_interval_s: float = Field(
        default=60,
        ge=6,
        description="Seconds between two polls of the incremental ticket export (Zendesk allows 10 export requests "
        "a minute).",
    )
    max_pages_per_poll: int = Field(
        default=3, ge=1, le=10, description="Export pages one poll reads at most; a backlog continues at once."
    )
    start_time: datetime | None = Field(
        default=None,
        description="Where the export starts without a checkpoint: tickets changed at or after it are published (a "
        "backfill). Unset: from the first poll on.",
    )
    default_visibility: Visibility = Field(default="internal", description="Visibility of tickets and public comments.")
    internal_visibility: Visibility = Field(
        default="restricted",
        description="Visibility of internal notes; never shown on a social platform in any case (they are "
        "`public: false`).",
    )
    comment_public: bool = Field(
        default=False,
        description="Whether threadlink's own comments (back-links, mirrored replies) are public replies, emailed to "
        "the requester; by default they are internal notes, seen by agents only.",
    )
    comment_backlinks: bool = Field(
        default=True, description="Add a 'Discussed in <thread>' comment to a ticket when a thread links to it."
    )
    requests_per_minute: int = Field(
        default=200,
        ge=1,
        description="The account's API limit (Team 200, Growth and Professional 400, Enterprise 700, High Volume "
        "2500 a minute); the sink keeps below it.",
    )
    request_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one REST call, in seconds.")
    redelivery_window_s: float = Field(
        default=900,
        ge=0,
        description="At start, deliveries published this many seconds back are read from Kafka, to recognise "
        "redeliveries.",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ValueError("must be the account's address such as https://acme.zendesk.com (no path)")
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> Self:
        token = self.email is not None or self.api_token is not None
        if token and self.oauth_token is not None:
            raise ValueError("give either email and api_token, or oauth_token, not both")
        if not token and self.oauth_token is None:
            raise ValueError("no credential: give email and api_token (an API token), or oauth_token")
        if token and (self.email is None or self.api_token is None):
            missing = "api_token" if self.api_token is None else "email"
            raise ValueError(f"an API token needs both email and api_token; {missing} is missing")
        return self

    def ticket_url(self, key: str) -> str:
        """The agent's page of a ticket."""
        return f"{self.base_url}/agent/tickets/{key}"
