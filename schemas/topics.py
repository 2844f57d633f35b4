"""The topic catalog: every topic threadlink uses, what its key is, what its values are.

`threadlink topics apply` creates or updates them from this catalog; the AsyncAPI document
(schemas/asyncapi.yaml) is generated from it. Names are `<namespace>.<area>.<what>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from schemas.checkpoints import Checkpoint
from schemas.commands import Command, DeadLetter, LedgerEntry
from schemas.envelope import Envelope
from schemas.links import Link, LinkRequest
from schemas.records import RecordEvent, TicketComment
from schemas.social import SocialMessage

DAY_MS = 24 * 3600 * 1000

#: Topics whose partitions must line up, because one agent joins them with a table
#: (link requests meet the record table). Changing one count means changing both.
RECORD_PARTITIONS = 6


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    value_model: Any
    description: str
    partitions: int = 6
    cleanup_policy: Literal["delete", "compact", "compact,delete"] = "delete"
    retention_ms: int | None = 7 * DAY_MS
    extra_configs: dict[str, str] = field(default_factory=dict)

    def configs(self, replication_factor: int) -> dict[str, str]:
        configs = {
            "cleanup.policy": self.cleanup_policy,
            # acks=all only protects data when a write needs more than one replica.
            "min.insync.replicas": str(min(2, replication_factor)),
            **self.extra_configs,
        }
        if self.retention_ms is not None:
            configs["retention.ms"] = str(self.retention_ms)
        return configs


@dataclass(frozen=True)
class TopicNames:
    """Topic names for one namespace. Tests use their own namespace on the shared broker."""

    namespace: str = "threadlink"

    @property
    def social_messages(self) -> str:
        return f"{self.namespace}.social.messages"

    @property
    def records(self) -> str:
        return f"{self.namespace}.records.tickets"

    @property
    def record_comments(self) -> str:
        return f"{self.namespace}.records.comments"

    @property
    def link_requests(self) -> str:
        return f"{self.namespace}.links.requests"

    @property
    def links(self) -> str:
        return f"{self.namespace}.links"

    @property
    def dead_letters(self) -> str:
        return f"{self.namespace}.deadletter"

    @property
    def ledger(self) -> str:
        return f"{self.namespace}.sinks.ledger"

    @property
    def checkpoints(self) -> str:
        return f"{self.namespace}.connectors.checkpoints"

    def commands(self, target: str) -> str:
        return f"{self.namespace}.commands.{target}"


def catalog(names: TopicNames, command_targets: list[str] | tuple[str, ...]) -> list[TopicSpec]:
    """All topics for a deployment; one commands topic per connector that runs a sink."""
    specs = [
        TopicSpec(
            names.social_messages,
            "thread id",
            Envelope[SocialMessage],
            "Messages posted, edited or deleted in social threads.",
        ),
        TopicSpec(
            names.records,
            "record id",
            Envelope[RecordEvent],
            "Latest state of core-system records (or that one is missing); feeds the record table.",
            partitions=RECORD_PARTITIONS,
            cleanup_policy="compact",
            retention_ms=None,
        ),
        TopicSpec(
            names.record_comments, "record id", Envelope[TicketComment], "Comments added to core-system records."
        ),
        TopicSpec(
            names.link_requests,
            "record id",
            Envelope[LinkRequest],
            "Mentions of records, re-keyed by record to meet the record table.",
            partitions=RECORD_PARTITIONS,
            retention_ms=DAY_MS,
        ),
        TopicSpec(
            names.links,
            "thread id|record id",
            Envelope[Link],
            "Which threads discuss which records.",
            cleanup_policy="compact",
            retention_ms=None,
        ),
        TopicSpec(
            names.dead_letters,
            "original key",
            Envelope[DeadLetter],
            "What could not be processed, with the reason; replay with `threadlink dlq replay`.",
            partitions=1,
            retention_ms=30 * DAY_MS,
        ),
        TopicSpec(
            names.ledger,
            "command id",
            Envelope[LedgerEntry],
            "Side effects already done, so redelivered commands are not done twice.",
            cleanup_policy="compact",
            retention_ms=None,
        ),
        TopicSpec(
            names.checkpoints,
            "connector/poller",
            Envelope[Checkpoint],
            "Each poller's cursor, written in one transaction with its poll's events; its partitions "
            "decide which replica owns which poller.",
            cleanup_policy="compact",
            retention_ms=None,
        ),
    ]
    for target in sorted(set(command_targets)):
        specs.append(
            TopicSpec(
                names.commands(target),
                "thread id or record id",
                Envelope[Command],
                f"Commands for the {target} connector's sink.",
            )
        )
    return specs
