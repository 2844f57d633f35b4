"""Links back to Slack messages, as Slack itself makes them (chat.getPermalink) where the link
threadlink builds from the workspace URL would be wrong: in Slack Connect channels (the other
organisation's people open them through their own workspace) and on Enterprise Grid (links go
through the org's domain).

Resolved at intake, once per message: the permalink travels on the SocialMessage to every flow
and every core system's back-link (Jira, GitHub, Redmine, Zendesk comments, Escalate's transcript,
drafts), which cannot ask Slack themselves. So the intake decides (`permalinks` in the config):

- `local` (default): the built link, no Web API call;
- `auto`: chat.getPermalink for events Slack marks as from a Slack Connect channel
  (`is_ext_shared_channel`) or an Enterprise Grid org (`enterprise_id`), built elsewhere;
- `api`: chat.getPermalink for every message.

Answers are cached (bounded, least recently used first out), so an edit or a redelivery of a
message asks nothing again. The call is bounded in time (`permalink_timeout_s`: Slack wants its
events answered within 3 seconds) and never fails intake: on any error the built link stays.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any, Literal

from connectors.errors import ConnectorError
from connectors.slack.client import SlackClient

log = logging.getLogger(__name__)

PermalinkMode = Literal["local", "auto", "api"]
MAX_CACHED = 10_000


def needs_slacks_link(payload: dict[str, Any]) -> bool:
    """Whether Slack's link may differ from the built one for this event_callback: a Slack
    Connect channel, or a workspace of an Enterprise Grid org."""
    if payload.get("is_ext_shared_channel") is True or payload.get("enterprise_id"):
        return True
    authorizations = payload.get("authorizations")
    if isinstance(authorizations, list):
        return any(isinstance(a, dict) and a.get("enterprise_id") for a in authorizations[:10])
    return False


class Permalinks:
    """Lifecycle: built with the events source, shares its Web API client; no start or stop."""

    def __init__(
        self,
        client: SlackClient | None,
        mode: PermalinkMode = "local",
        *,
        timeout_s: float = 1.5,
        max_cached: int = MAX_CACHED,
    ) -> None:
        self._client = client
        self._mode = mode
        self._timeout_s = timeout_s
        self._max_cached = max_cached
        self._cache: OrderedDict[tuple[str, str], str] = OrderedDict()

    def wanted(self, payload: dict[str, Any]) -> bool:
        if self._client is None or self._mode == "local":
            return False
        return self._mode == "api" or needs_slacks_link(payload)

    async def link(self, channel: str, ts: str, built: str | None) -> str | None:
        """Slack's link to message `ts` in `channel`, or `built` when Slack does not give one in time."""
        assert self._client is not None  # wanted() said so
        key = (channel, ts)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        try:
            link = await asyncio.wait_for(self._client.permalink(channel, ts), self._timeout_s)
        except (ConnectorError, TimeoutError) as exc:
            log.warning(
                "slack: no permalink for %s/%s from Slack (%s); keeping the built one", channel, ts, exc or "timed out"
            )
            return built
        self._cache[key] = link
        while len(self._cache) > self._max_cached:
            self._cache.popitem(last=False)
        return link
