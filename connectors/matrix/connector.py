"""The Matrix connector's parts, as the runtime builds them (registered in connectors/registry.py)."""

from __future__ import annotations

from typing import Any

from connectors.base import ConnectorContext, ConnectorParts, ConnectorPlugin
from connectors.matrix.config import MatrixConfig
from connectors.matrix.source import MatrixTransactionsSource


def build(config: Any, ctx: ConnectorContext) -> ConnectorParts:
    if not isinstance(config, MatrixConfig):
        config = MatrixConfig.model_validate(config)
    return ConnectorParts(webhooks=[MatrixTransactionsSource(config, ctx)])


PLUGIN = ConnectorPlugin(
    kind="matrix",
    config_model=MatrixConfig,
    build=build,
    description="Matrix: what happens in rooms in as an application service (transactions authenticated "
    "with the hs_token).",
)
