"""The OPC UA connector: shop-floor variables (machine states, order statuses) become
production-order and machine-state records, mapped by configuration alone."""

from __future__ import annotations

from connectors.base import ConnectorContext, ConnectorParts, ConnectorPlugin
from connectors.opcua.config import OpcuaConfig
from connectors.opcua.source import OpcuaSource


def build(config: OpcuaConfig, ctx: ConnectorContext) -> ConnectorParts:
    return ConnectorParts(streams=[OpcuaSource(config, ctx)])


PLUGIN = ConnectorPlugin(
    kind="opcua",
    config_model=OpcuaConfig,
    build=build,
    description="OPC UA (subscriptions with data-change notifications, browse paths, re-read on reconnect): "
    "node values become production-order and machine-state records by configuration.",
)
