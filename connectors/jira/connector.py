"""The Jira Cloud connector: webhooks in, issue look-ups and back-link comments out."""

from __future__ import annotations

from connectors.base import ConnectorContext, ConnectorParts, ConnectorPlugin
from connectors.jira.config import JiraConfig
from connectors.jira.sink import JiraSink
from connectors.jira.source import JiraWebhookSource


def build(config: JiraConfig, ctx: ConnectorContext) -> ConnectorParts:
    return ConnectorParts(webhooks=[JiraWebhookSource(config, ctx)], sink=JiraSink(config, ctx))


PLUGIN = ConnectorPlugin(
    kind="jira",
    config_model=JiraConfig,
    build=build,
    description="Jira Cloud: issue and comment webhooks become records; looks issues up and posts back-links.",
)
