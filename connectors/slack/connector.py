"""The Slack connector's parts, as the runtime builds them (registered in connectors/registry.py)."""

from __future__ import annotations

from typing import Any

from connectors.base import ConnectorContext, ConnectorParts, ConnectorPlugin
from connectors.slack.client import SlackClient
from connectors.slack.config import SlackConfig
from connectors.slack.mapping import SlackIdentity
from connectors.slack.sink import SlackSink
from connectors.slack.source import SlackEventsSource


def build(config: Any, ctx: ConnectorContext) -> ConnectorParts:
    """One Web API client and one identity, shared by the events webhook and the card sink."""
    if not isinstance(config, SlackConfig):
        config = SlackConfig.model_validate(config)
    client = SlackClient(config)
    identity = SlackIdentity(
        bot_user_id=config.bot_user_id, bot_id=config.bot_id, app_id=config.app_id, workspace_url=config.workspace_url
    )
    sink = SlackSink(client, identity, config.rate_limits)
    sink.max_concurrency = config.max_concurrency
    return ConnectorParts(webhooks=[SlackEventsSource(config, ctx, identity, client=client)], sink=sink)


PLUGIN = ConnectorPlugin(
    kind="slack",
    config_model=SlackConfig,
    build=build,
    description="Slack: thread messages in through the Events API (signed webhook), ticket cards out via the Web API.",
)
