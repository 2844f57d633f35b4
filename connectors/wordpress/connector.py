"""The WordPress connector: posts and pages polled in as articles; look-ups and a thread's draft out."""

from __future__ import annotations

from connectors.base import ConnectorContext, ConnectorParts, ConnectorPlugin, PollingSource
from connectors.wordpress.config import WordPressConfig
from connectors.wordpress.sink import WordPressSink
from connectors.wordpress.source import WordPressPoller


def build(config: WordPressConfig, ctx: ConnectorContext) -> ConnectorParts:
    pollers: list[PollingSource] = [WordPressPoller(config, ctx, kind=kind) for kind in config.types]
    return ConnectorParts(pollers=pollers, sink=WordPressSink(config, ctx))


PLUGIN = ConnectorPlugin(
    kind="wordpress",
    config_model=WordPressConfig,
    build=build,
    description="WordPress: polls posts and pages into article records; looks them up, writes a resolved "
    "thread's draft post.",
)
