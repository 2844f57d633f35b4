"""The Jira Cloud connector: webhooks in, issue look-ups and back-link comments out."""

from __future__ import annotations

from connectors.base import ConnectorContext, ConnectorParts, ConnectorPlugin, PollingSource, WebhookSource
from connectors.jira.config import JiraConfig
from connectors.jira.poller import JiraIssuesPoller
from connectors.jira.sink import JiraSink
from connectors.jira.source import JiraWebhookSource


def build(config: JiraConfig, ctx: ConnectorContext) -> ConnectorParts:
    webhooks: list[WebhookSource] = [JiraWebhookSource(config, ctx)] if config.webhook_secret is not None else []
    pollers: list[PollingSource] = [JiraIssuesPoller(config, ctx)] if config.polling is not None else []
    return ConnectorParts(webhooks=webhooks, pollers=pollers, sink=JiraSink(config, ctx))


PLUGIN = ConnectorPlugin(
    kind="jira",
    config_model=JiraConfig,
    build=build,
    description="Jira Cloud: issue and comment webhooks (or a JQL poll) become records; looks issues up, posts "
    "back-links, opens tickets.",
)
