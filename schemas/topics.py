"""The topic catalog: every topic threadlink uses, what its key is, what its values are.

`threadlink topics apply` creates or updates them from this catalog; the AsyncAPI document
(schemas/asyncapi.yaml) is generated from it. Names are `<namespace>.<area>.<what>`.

Partition counts are part of the contract where keys must meet: the streams read their inputs
co-partitioned (a thread's or record's events all land on the same partition number of every
input topic, where that key's table state lives), and a sink's ledger is partitioned like its
commands. Such topics, and compacted keyed ones, must never get more partitions in place: that
moves keys to other partitions and silently breaks the join (see `fixed_partitions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from schemas.checkpoints import Checkpoint
from schemas.commands import Command
from schemas.deadletters import DeadLetter
from schemas.envelope import Envelope
from schemas.ledger import LedgerEntry
from schemas.links import Link, LinkRequest
from schemas.outcomes import Outcome
from schemas.records import RecordComment, RecordEvent
from schemas.social import SocialEvent
from schemas.subscriptions import Subscription

DAY_MS = 24 * 3600 * 1000

#: Partitions of every topic the streams read: they are joined by key, so they must all agree.
STREAM_PARTITIONS = 6
#: Partitions of every commands topic and of the ledger: an entry lands where its command does.
SINK_PARTITIONS = 6
#: How long the ledger remembers a command (docs/architecture.md says what this guarantees).
LEDGER_RETENTION_MS = 7 * DAY_MS

PartitionGroup = Literal["streams", "sinks"]


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    value_model: Any
    description: str
    partitions: int = 6
    cleanup_policy: Literal["delete", "compact", "compact,delete"] = "delete"
    retention_ms: int | None = 7 * DAY_MS
    partition_group: PartitionGroup | None = None
    """Topics of one group are joined by key: they share a partition count."""
    extra_configs: dict[str, str] = field(default_factory=dict)

    @property
    def fixed_partitions(self) -> bool:
        """Adding partitions would move keys: refused by `topics apply` (migrate instead)."""
        return self.partition_group is not None or "compact" in self.cleanup_policy

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
    def social_events(self) -> str:
        return f"{self.namespace}.social.events"

    @property
    def records(self) -> str:
        return f"{self.namespace}.records"

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
    def outcomes(self) -> str:
        return f"{self.namespace}.sinks.outcomes"

    @property
    def dead_letters(self) -> str:
        return f"{self.namespace}.deadletter"

    @property
    def ledger(self) -> str:
        return f"{self.namespace}.sinks.ledger"

    @property
    def checkpoints(self) -> str:
        return f"{self.namespace}.connectors.checkpoints"

    @property
    def subscriptions(self) -> str:
        return f"{self.namespace}.reach.subscriptions"

    def commands(self, target: str) -> str:
        return f"{self.namespace}.commands.{target}"


def catalog(names: TopicNames, command_targets: list[str] | tuple[str, ...]) -> list[TopicSpec]:
    """All topics for a deployment; one commands topic per connector that runs a sink."""
    specs = [
        TopicSpec(
            names.social_events,
            "thread id",
            Envelope[SocialEvent],
            "What happens in social threads: messages posted, edited or deleted; reactions.",
            partitions=STREAM_PARTITIONS,
            partition_group="streams",
        ),
        TopicSpec(
            names.records,
            "record id",
            Envelope[RecordEvent],
            "Latest state of core-system records of every kind (or that one is missing); feeds the record table.",
            partitions=STREAM_PARTITIONS,
            partition_group="streams",
            cleanup_policy="compact",
            retention_ms=None,
        ),
        TopicSpec(
            names.record_comments,
            "record id",
            Envelope[RecordComment],
            "Comments added to, edited on or deleted from core-system records.",
            partitions=STREAM_PARTITIONS,
            partition_group="streams",
        ),
        TopicSpec(
            names.link_requests,
            "record id",
            Envelope[LinkRequest],
            "Mentions of records (and mentions withdrawn), re-keyed by record to meet the record table.",
            partitions=STREAM_PARTITIONS,
            partition_group="streams",
            retention_ms=DAY_MS,
        ),
        TopicSpec(
            names.outcomes,
            "the command's reply key (record id or thread id)",
            Envelope[Outcome],
            "What sinks did with each command (done with what it made, failed with why, superseded); read by streams.",
            partitions=STREAM_PARTITIONS,
            partition_group="streams",
            retention_ms=DAY_MS,
        ),
        TopicSpec(
            names.links,
            "thread id|record id",
            Envelope[Link],
            "Which threads discuss which records, and their cards' state.",
            cleanup_policy="compact",
            retention_ms=None,
        ),
        TopicSpec(
            names.subscriptions,
            "platform:workspace:user|about:value",
            Envelope[Subscription],
            "People's subscriptions to records, projects and keywords (Reach); every streams worker reads them all.",
            partitions=1,
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
            "the command's key",
            Envelope[LedgerEntry],
            "Commands started and done, partitioned like the commands, so redelivered ones are not done twice.",
            partitions=SINK_PARTITIONS,
            partition_group="sinks",
            retention_ms=LEDGER_RETENTION_MS,
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
                partitions=SINK_PARTITIONS,
                partition_group="sinks",
                # Never longer than the ledger remembers: nothing re-read is older than it.
                retention_ms=LEDGER_RETENTION_MS,
            )
        )
    return specs
