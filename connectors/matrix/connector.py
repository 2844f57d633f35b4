"""The Matrix connector's parts, as the runtime builds them (registered in connectors/registry.py)."""

from __future__ import annotations

from typing import Any

from connectors.base import ConnectorContext, ConnectorParts, ConnectorPlugin
from connectors.matrix.client import MatrixClient
from connectors.matrix.config import MatrixConfig
from connectors.matrix.sink import MatrixSink
from connectors.matrix.source import MatrixTransactionsSource


def build(config: Any, ctx: ConnectorContext) -> ConnectorParts:
    """One client-server API client (the as_token's), shared by the transactions webhook (room
    state) and the card sink."""
    if not isinstance(config, MatrixConfig):
        config = MatrixConfig.model_validate(config)
    client = MatrixClient(config)
    sink = MatrixSink(
        client,
        bot_user_id=config.bot_user_id,
        per_room_per_s=config.messages_per_room_per_s,
        room_burst=config.room_burst,
    )
    sink.max_concurrency = config.max_concurrency
    return ConnectorParts(webhooks=[MatrixTransactionsSource(config, ctx, client=client)], sink=sink)


PLUGIN = ConnectorPlugin(
    kind="matrix",
    config_model=MatrixConfig,
    build=build,
    description="Matrix: what happens in rooms in as an application service (transactions authenticated "
    "with the hs_token); record cards out through the client-server API as the service's user.",
)
