"""The GitHub Issues connector: issue and comment webhooks in, issue look-ups, thread issues and
back-link comments out."""

from __future__ import annotations

from connectors.base import ConnectorContext, ConnectorParts, ConnectorPlugin
from connectors.github.config import GitHubConfig
from connectors.github.sink import GitHubSink
from connectors.github.source import GitHubWebhookSource


def build(config: GitHubConfig, ctx: ConnectorContext) -> ConnectorParts:
    return ConnectorParts(webhooks=[GitHubWebhookSource(config, ctx)], sink=GitHubSink(config, ctx))


PLUGIN = ConnectorPlugin(
    kind="github",
    config_model=GitHubConfig,
    build=build,
    description="GitHub Issues: issue and comment webhooks become records; looks issues up, opens and comments.",
)
