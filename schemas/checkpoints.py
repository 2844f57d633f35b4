"""Where each poller is in its platform's changes: checkpointed by the connector runtime in the
compacted topic `<ns>.connectors.checkpoints`, in the same Kafka transaction as the events of
the poll that reached it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class Checkpoint(BaseModel):
    connector: str = Field(description="The connector's name in the config, e.g. jira.")
    source: str = Field(description="The poller's name within the connector.")
    cursor: dict[str, Any] | str | None = Field(
        description="The poller's own cursor (a timestamp, a page token, ...): where its next poll starts."
    )
    updated_at: datetime

    @property
    def key(self) -> str:
        return checkpoint_key(self.connector, self.source)


def checkpoint_key(connector: str, source: str) -> str:
    """The Kafka key of a poller's checkpoints: `<connector>/<poller name>`."""
    return f"{connector}/{source}"
