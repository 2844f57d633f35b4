"""The Zendesk connector: ticket-event webhooks and the incremental ticket export in; ticket
look-ups, comments and a thread's ticket out."""

from __future__ import annotations

from connectors.base import ConnectorContext, ConnectorParts, ConnectorPlugin
from connectors.zendesk.config import ZendeskConfig
from connectors.zendesk.sink import ZendeskSink
from connectors.zendesk.source import ZendeskTicketExport, ZendeskWebhookSource


def build(config: ZendeskConfig, ctx: ConnectorContext) -> ConnectorParts:
    return ConnectorParts(
        webhooks=[ZendeskWebhookSource(config, ctx)],
        pollers=[ZendeskTicketExport(config, ctx)],
        sink=ZendeskSink(config, ctx),
    )


PLUGIN = ConnectorPlugin(
    kind="zendesk",
    config_model=ZendeskConfig,
    build=build,
    description="Zendesk Support: signed ticket webhooks and the incremental ticket export become records and "
    "comments (internal notes stay internal); looks tickets up, comments, opens a thread's ticket once.",
)
