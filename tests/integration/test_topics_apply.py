"""`threadlink topics apply` makes the broker match the catalog, and running it again is a no-op."""

from __future__ import annotations

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

from schemas.topics import catalog
from tests.integration.kafka_helpers import wait_for
from threadlink.cli import main
from threadlink.config import Settings
from threadlink.topics_admin import REFUSED, apply_topics

pytestmark = pytest.mark.integration


def test_apply_creates_configures_refuses_to_move_keys_and_is_idempotent(kafka_bootstrap: str, namespace: str) -> None:
    settings = Settings(
        kafka={"bootstrap_servers": kafka_bootstrap, "namespace": f"{namespace}-apply"},
        connectors={"slack": {}, "jira": {}},
    )
    names = settings.kafka.topics
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap.split(","))
    try:
        # An operator made the messages topic by hand, too small and with the wrong policy.
        admin.create_topics([NewTopic(names.social_events, 2, 1, topic_configs={"retention.ms": "1000"})])
        report = apply_topics(settings)
        expected = {spec.name for spec in catalog(names, ["slack", "jira"])}
        assert {line.split()[1] for line in report if line.startswith("created")} == expected - {names.social_events}
        # More partitions would move threads to other partitions than their state: refused, with the way out.
        (refusal,) = [line for line in report if line.startswith(f"{REFUSED}  {names.social_events}")]
        assert "has 2 partitions, catalog says 6" in refusal and "namespace" in refusal

        described = {t["name"]: t for t in admin.describe_topics(sorted(expected))}
        assert len(described[names.social_events]["partitions"]) == 2
        assert len(described[names.records]["partitions"]) == len(described[names.link_requests]["partitions"])
        assert len(described[names.ledger]["partitions"]) == len(described[names.commands("slack")]["partitions"])
        resources = [
            ConfigResource(ConfigResourceType.TOPIC, names.social_events),
            ConfigResource(ConfigResourceType.TOPIC, names.records),
        ]

        # Config changes reach the broker's view through the metadata log: a moment later.
        def applied() -> str | None:
            text = str(admin.describe_configs(resources))
            return text if "604800000" in text else None

        text = wait_for(
            applied,
            timeout_s=20,
            what="the catalog's retention (7 days, not the operator's 1 s)",
        )
        assert "'compact'" in text  # the record table's source is compacted

        again = apply_topics(settings)
        assert all(line.startswith("ok") for line in again if names.social_events not in line), again
    finally:
        admin.close()


def test_cli_without_a_broker_says_how_to_fix_it(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "threadlink.yaml"
    config.write_text("kafka:\n  namespace: x\n")
    assert main(["--config", str(config), "topics", "apply"]) == 2
    err = capsys.readouterr().err
    assert "kafka.bootstrap_servers is not set" in err and "Traceback" not in err


def test_cli_exits_1_when_it_refused_to_add_partitions(
    kafka_bootstrap: str,
    namespace: str,
    tmp_path,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    ns = f"{namespace}-refuse"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap.split(","))
    try:
        admin.create_topics([NewTopic(f"{ns}.records", 3, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        admin.close()
    config = tmp_path / "threadlink.yaml"
    config.write_text(f"kafka:\n  bootstrap_servers: {kafka_bootstrap}\n  namespace: {ns}\n")
    assert main(["--config", str(config), "topics", "apply"]) == 1
    out = capsys.readouterr().out
    assert f"{REFUSED}  {ns}.records: has 3 partitions" in out
