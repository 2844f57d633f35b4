"""Every connector type threadlink knows. Adding a system: a folder under connectors/ with a
`connector.py` exposing PLUGIN, and one line here."""

from __future__ import annotations

import importlib

from connectors.base import ConnectorPlugin

PLUGINS: dict[str, str] = {
    "slack": "connectors.slack.connector",
    "jira": "connectors.jira.connector",
    "github": "connectors.github.connector",
    "mqtt": "connectors.mqtt.connector",
    "matrix": "connectors.matrix.connector",
    "opcua": "connectors.opcua.connector",
    "redmine": "connectors.redmine.connector",
    "wordpress": "connectors.wordpress.connector",
    "zendesk": "connectors.zendesk.connector",
}


def plugin_for(kind: str) -> ConnectorPlugin | None:
    module = PLUGINS.get(kind)
    if module is None:
        return None
    return importlib.import_module(module).PLUGIN
