"""The Slack connector's parts, as the runtime builds them (registered in connectors/registry.py)."""

from __future__ import annotations

from typing import Any

from connectors.base import ConnectorContext, ConnectorParts, ConnectorPlugin
from connectors.slack.client import SlackClient
from connectors.slack.config import SlackConfig
from connectors.slack.interactivity import SlackInteractivitySource
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
    webhooks = [
        SlackEventsSource(config, ctx, identity, client=client),
        SlackInteractivitySource(config, ctx, identity),
    ]
    return ConnectorParts(webhooks=webhooks, sink=sink)


PLUGIN = ConnectorPlugin(
    kind="slack",
    config_model=SlackConfig,
    build=build,
    description="Slack: what happens in threads in through the Events API and the cards' buttons through the "
    "interactivity endpoint (signed webhooks); record cards out via the Web API.",
)
