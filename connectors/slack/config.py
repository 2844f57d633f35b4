"""Configuration of one Slack app installed in one workspace."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class SlackRateLimits(BaseModel):
    """Slack's published limits (api.slack.com/apis/rate-limits): chat.postMessage about one
    message per second per channel with short bursts; chat.update, chat.delete and
    conversations.replies are Tier 3 (50+ per minute per workspace). threadlink keeps under them
    so Slack rarely has to answer 429; when it does, that channel waits for Retry-After and the
    others go on."""

    model_config = ConfigDict(extra="forbid")

    messages_per_channel_per_s: float = Field(
        default=1.0, gt=0, description="Messages posted into one channel per second, on average."
    )
    channel_burst: int = Field(default=3, ge=1, description="Messages one channel may take at once.")
    tier3_per_minute: float = Field(
        default=50, gt=0, description="Calls per minute of each Tier 3 method (chat.update, chat.delete, ...)."
    )
    tier3_burst: int = Field(default=10, ge=1, description="Tier 3 calls of one method at once.")


class SlackConfig(BaseModel):
    """One Slack app (bot token + signing secret). Example (threadlink.yaml)::

        connectors:
          slack:
            signing_secret: ${SLACK_SIGNING_SECRET}
            bot_token: ${SLACK_BOT_TOKEN}

    Point the app's Event Subscriptions Request URL at `/webhooks/<connector name>/events`
    and subscribe to the bot events message.channels, message.groups (and message.im,
    message.mpim if wanted), and, for the rest of what happens in a thread, reaction_added,
    reaction_removed, app_mention, member_joined_channel, member_left_channel, channel_created,
    channel_rename, channel_archive, channel_unarchive (group_* for private channels). Point
    Interactivity's Request URL at `/webhooks/<connector name>/interactivity` for the cards'
    buttons; the bot needs the chat:write scope to post cards, and
    channels:history (groups:history for private channels) to find a card a timed-out post
    may have left, instead of posting it twice.
    """

    model_config = ConfigDict(extra="forbid")

    signing_secret: SecretStr = Field(
        description=(
            "The app's Signing Secret (api.slack.com/apps > Basic Information > App Credentials). "
            "Every Events API request is checked against it; those that do not match are answered 401."
        )
    )
    bot_token: SecretStr = Field(
        description="The Bot User OAuth Token (xoxb-...) from OAuth & Permissions; needs the chat:write scope, "
        "and channels:history (groups:history for private channels) so a retried card is not posted twice."
    )
    api_base_url: str = Field(
        default="https://slack.com/api",
        description="Base address of the Web API (http(s); a trailing slash is ignored). Change it only for a sandbox.",
    )
    signature_max_age_s: int = Field(
        default=300,
        ge=1,
        description=(
            "Replay window: the furthest X-Slack-Request-Timestamp may be from now (past or future), in seconds."
        ),
    )
    bot_user_id: str | None = Field(
        default=None,
        description="threadlink's own bot user id (U...). Left unset, it is learned with auth.test at start.",
    )
    bot_id: str | None = Field(
        default=None,
        description="threadlink's own bot id (B...). Left unset, it is learned with auth.test at start.",
    )
    app_id: str | None = Field(
        default=None,
        description="threadlink's Slack app id (A...); messages carrying it are threadlink's own and never acted on.",
    )
    workspace_url: str | None = Field(
        default=None,
        description="The workspace's address (https://acme.slack.com/), for links back to threads. "
        "Left unset, it is learned with auth.test at start.",
    )
    redelivery_window_s: int = Field(
        default=900,
        ge=0,
        le=86_400,
        description="At start, the events published in this many seconds before are read back from Kafka, so "
        "Slack's redeliveries (three, within minutes) are recognised after a restart and by every replica. "
        "0: only this process's own memory.",
    )
    ignore_bots: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Other bots whose messages threadlink never acts on, by bot id (B...) or app id (A...), "
        "or \"*\" for every bot: two bridges that answer each other's messages would loop. threadlink's own "
        "messages are always marked and never acted on.",
    )
    permalinks: Literal["local", "auto", "api"] = Field(
        default="local",
        description="How a message's link back to Slack is made. local: from the workspace URL, no Web API "
        "call; auto: asked of Slack (chat.getPermalink) for messages in Slack Connect channels and on "
        "Enterprise Grid, where the local form differs, local elsewhere; api: asked of Slack for every "
        "message. Asked links are cached; a call that fails or is slow falls back to the local link.",
    )
    permalink_timeout_s: float = Field(
        default=1.5,
        gt=0,
        le=2.5,
        description="How long intake waits for chat.getPermalink before it keeps the local link (Slack wants "
        "its events answered within 3 seconds).",
    )
    request_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one Web API call, in seconds.")
    rate_limits: SlackRateLimits = Field(
        default_factory=SlackRateLimits, description="The limits the sink keeps (Slack's, by default)."
    )
    max_concurrency: int = Field(
        default=16,
        ge=1,
        le=256,
        description="Web API calls in flight at once (httpx's pool scans every connection per request: "
        "more costs CPU for little gain).",
    )

    @field_validator("ignore_bots")
    @classmethod
    def _bot_ids(cls, value: list[str]) -> list[str]:
        for bot in value:
            if bot != "*" and not (bot[:1] in ("B", "A") and bot[1:].isalnum() and len(bot) <= 32):
                raise ValueError(f'{bot!r} is not a bot id (B...), an app id (A...) or "*"')
        return value

    @field_validator("api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) address such as https://slack.com/api")
        return value
