"""The Redmine connector: issues and journals polled in; issue look-ups, notes and tickets out."""

from __future__ import annotations

from connectors.base import ConnectorContext, ConnectorParts, ConnectorPlugin, PollingSource
from connectors.redmine.config import RedmineConfig
from connectors.redmine.sink import RedmineSink
from connectors.redmine.source import RedmineIssuesPoller


def build(config: RedmineConfig, ctx: ConnectorContext) -> ConnectorParts:
    projects: list[str | None] = list(config.projects) or [None]
    pollers: list[PollingSource] = [RedmineIssuesPoller(config, ctx, project=p) for p in projects]
    return ConnectorParts(pollers=pollers, sink=RedmineSink(config, ctx))


PLUGIN = ConnectorPlugin(
    kind="redmine",
    config_model=RedmineConfig,
    build=build,
    description="Redmine: polls issues and journals into records and comments; looks issues up, adds notes, "
    "opens tickets.",
)
