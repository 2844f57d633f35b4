"""The sinks' ledger: which commands were started and which were done, so a redelivered or
re-emitted command is not done twice. Kept in a topic partitioned like the commands (same key,
same partition count), for a retention window (see docs/architecture.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from schemas.outcomes import Effect


class LedgerEntry(BaseModel):
    """A side effect that was done (sinks skip commands whose id is in the ledger), or that was
    started: an `attempted` entry without a later `done` one means its outcome is unknown."""

    command_id: str
    target: str
    state: Literal["attempted", "done"] = "done"
    at: datetime
    effect: Effect | None = None
    coalesce_key: str | None = Field(
        default=None, description="The done command's coalesce_key: lower ranks of it are superseded from now on."
    )
    coalesce_rank: int | None = None
