"""The MQTT connector: shop-floor messages (MES, Sparkplug-style topics) become production-order
and machine-state records, mapped by configuration alone."""

from __future__ import annotations

from connectors.base import ConnectorContext, ConnectorParts, ConnectorPlugin
from connectors.mqtt.config import MqttConfig
from connectors.mqtt.source import MqttSource


def build(config: MqttConfig, ctx: ConnectorContext) -> ConnectorParts:
    return ConnectorParts(streams=[MqttSource(config, ctx)])


PLUGIN = ConnectorPlugin(
    kind="mqtt",
    config_model=MqttConfig,
    build=build,
    description="MQTT 5 (QoS 1, persistent session, shared subscription): topics and JSON payloads become "
    "production-order and machine-state records by configuration.",
)
