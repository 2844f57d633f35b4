"""`threadlink topics apply`: make the broker's topics match the catalog in schemas/topics.py.

Creates missing topics, adds partitions where the catalog has more and that is safe, and sets
the catalog's configs (incrementally: other settings an operator made are kept). Never deletes
anything and never shrinks (Kafka cannot): it says so instead.

Adding partitions moves keys to other partitions. For a compacted keyed topic (the latest
state of each key) or a topic joined with others by key (the streams' inputs, a sink's
commands and its ledger), that silently breaks the join, so `apply` refuses and says how to
migrate instead.
"""

from __future__ import annotations

import time
from typing import Any

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.protocol.metadata import MetadataRequest

from schemas.topics import TopicSpec, catalog
from threadlink.config import Settings

TOPIC_ALREADY_EXISTS = TopicAlreadyExistsError.errno
#: How a report line starts when `apply` would not do what the catalog says.
REFUSED = "refused "


def _why(spec: TopicSpec) -> str:
    what = (
        f"it is joined by key with the other {spec.partition_group} topics"
        if spec.partition_group
        else "it is compacted by key"
    )
    return (
        f"Not adding partitions: {what}, and more partitions would move keys to other partitions. "
        "To change the count, create the new topics beside the old ones (another kafka.namespace), "
        "let threadlink fill them, and switch over (docs/architecture.md, 'Changing partition counts')."
    )


def planned_topics(settings: Settings) -> list[TopicSpec]:
    targets = [name for name, entry in settings.connectors.items() if entry.enabled]
    return catalog(settings.kafka.topics, targets)


def apply_topics(settings: Settings, *, timeout_s: float = 60) -> list[str]:
    """Returns one line per topic saying what was done."""
    servers = settings.kafka.bootstrap_servers
    if not servers:
        raise ValueError("kafka.bootstrap_servers is not set")
    rf = settings.kafka.replication_factor
    specs = planned_topics(settings)
    admin = KafkaAdminClient(
        bootstrap_servers=servers.split(","),
        client_id=f"{settings.kafka.client_id}-admin",
        request_timeout_ms=int(timeout_s * 1000),
    )
    report: list[str] = []
    try:
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            answer = admin.create_topics(
                [NewTopic(s.name, s.partitions, rf, topic_configs=s.configs(rf)) for s in missing],
                timeout_ms=int(timeout_s * 1000),
                raise_errors=False,
            )
            for result in answer.get("topics", []):
                if result["error_code"] == TOPIC_ALREADY_EXISTS:
                    existing.add(result["name"])  # made meanwhile (another apply, an operator): update it below
                elif result["error_code"]:
                    raise RuntimeError(f"creating {result['name']} failed: {result['error_message']}")
            report += [
                f"created  {s.name} ({s.partitions} partitions, rf {rf}, {s.cleanup_policy})"
                for s in missing
                if s.name not in existing
            ]
        present = [s for s in specs if s.name in existing]
        expected = {s.name: s.partitions for s in specs}
        if present:
            described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics([s.name for s in present])}
            short = [s for s in present if described.get(s.name, 0) < s.partitions]
            kept_short = {s.name for s in short if s.fixed_partitions}
            grow = {s.name: NewPartitions(s.partitions) for s in short if s.name not in kept_short}
            if grow:
                admin.create_partitions(grow)
            # raise_on_unknown=False: the client's own check asks the broker about the topic first,
            # and a topic created a moment ago may not be in that answer yet.
            answer = admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, s.name, configs=s.configs(rf)) for s in present],
                raise_on_unknown=False,
            )
            refused_configs = {name: result for name, result in answer.get("topic", {}).items() if result != "OK"}
            if refused_configs:
                raise RuntimeError(
                    "the broker refused topic configs: " + "; ".join(f"{n}: {r}" for n, r in refused_configs.items())
                )
            for s in present:
                have = described.get(s.name, 0)
                if s.name in kept_short:
                    expected[s.name] = have
                    report.append(f"{REFUSED}  {s.name}: has {have} partitions, catalog says {s.partitions}. {_why(s)}")
                elif s.name in grow:
                    report.append(f"updated  {s.name}: partitions {have} -> {s.partitions}, configs applied")
                elif have > s.partitions:
                    expected[s.name] = have
                    report.append(
                        f"kept     {s.name}: has {have} partitions, catalog says {s.partitions} "
                        "(Kafka cannot shrink a topic)"
                    )
                else:
                    report.append(f"ok       {s.name}")
        _wait_for_leaders(admin, expected, timeout_s)
        _wait_for_group_coordinators(admin, group_ids(settings), min(timeout_s, 20))
    except KafkaError as exc:
        raise RuntimeError(f"Kafka at {servers} refused the topic changes: {exc}") from exc
    finally:
        admin.close()
    return report


def _wait_for_leaders(admin: KafkaAdminClient, partitions: dict[str, int], timeout_s: float) -> None:
    """New topics and partitions take a moment to get leaders, and a moment more to reach every
    broker's metadata cache: each broker answers metadata from its own. Waiting until every
    broker lists them all with leaders means a client that asks any broker right after (a
    producer, a consumer group's leader, `describe_topics`) sees them."""
    deadline = time.monotonic() + timeout_s
    brokers = [b["broker_id"] for b in admin.describe_cluster()["brokers"] if not b.get("is_fenced")]
    while True:
        if all(_has_leaders(_metadata_of(admin, node, sorted(partitions))["topics"], partitions) for node in brokers):
            return
        if time.monotonic() > deadline:
            raise RuntimeError("topics were created but have no partition leaders yet; is the cluster healthy?")
        time.sleep(0.2)


def group_ids(settings: Settings) -> list[str]:
    """The consumer groups a deployment's processes join."""
    ns = settings.kafka.namespace
    sinks = [f"{ns}.sink.{name}" for name, entry in settings.connectors.items() if entry.enabled]
    return [*sinks, f"{ns}.connectors.pollers", settings.streams.app_id]


def _wait_for_group_coordinators(admin: KafkaAdminClient, groups: list[str], timeout_s: float) -> None:
    """A fresh broker creates __consumer_offsets on the first group lookup and then loads its
    partitions: until then every join and heartbeat gets NOT_COORDINATOR (a dozen warnings at
    each first start). Asking for the deployment's groups here waits that out before any process
    joins. Best effort: clients retry on their own, so a slow cluster only delays this."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            answers = admin.describe_groups(groups)
        except KafkaError:
            answers = None
        if answers is not None and all(
            not a.get("error") or "GroupIdNotFound" in str(a["error"]) for a in answers.values()
        ):
            return
        time.sleep(0.2)


def _has_leaders(topics: list[dict[str, Any]], partitions: dict[str, int]) -> bool:
    return len(topics) == len(partitions) and all(
        t.get("error_code", 0) == 0
        and len(t["partitions"]) >= partitions[t["name"]]
        and all(p["leader_id"] >= 0 for p in t["partitions"])
        for t in topics
    )


def _metadata_of(admin: KafkaAdminClient, node_id: int, topics: list[str]) -> dict[str, Any]:
    """One broker's own view (the admin client's describe_topics asks whichever is least loaded)."""
    request = MetadataRequest(
        topics=[MetadataRequest.MetadataRequestTopic(name=t) for t in topics], allow_auto_topic_creation=False
    )

    async def ask() -> dict[str, Any]:
        return (await admin._manager.send(request, node_id=node_id)).to_dict()  # kafka-python 3 internals

    return admin._manager.run(ask)  # type: ignore[no-any-return]
