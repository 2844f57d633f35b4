"""What a sink publishes when a command looked a record up (FetchRecord): the record, or that it
is missing, on the records topic, with an id of the command's, so a redelivered command
publishes the same event again (downstream sees one)."""

from __future__ import annotations

from connectors.base import ConnectorContext
from schemas.commands import Command
from schemas.envelope import Envelope
from schemas.records import ArticleRecord, RecordEvent, RecordMissing, TicketRecord
from schemas.visibility import Visibility


async def publish_looked_up(
    ctx: ConnectorContext,
    data: TicketRecord | ArticleRecord | RecordMissing,
    type: str,
    command: Command,
    envelope: Envelope[Command],
    *,
    visibility: Visibility,
    id_suffix: str = "",
) -> None:
    """Publish `data` keyed by its record, traced from the command's envelope."""
    published = Envelope[RecordEvent].wrap(
        data,
        type=type,
        source_system=ctx.name,
        subject=data.ref.id,
        id=f"{ctx.name}:{command.command_id}{id_suffix}",
        visibility=visibility,
        parent_traceparent=envelope.traceparent,
    )
    await ctx.publisher.publish(ctx.topics.records, data.ref.id, published)
