"""deploy/kafka/local_kafka.py: clear one-line errors, and the 3-node cluster that fault tests use."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from connectors.runtime.kafka import KafkaPublisher
from schemas import events
from schemas.envelope import Envelope
from schemas.social import Author, SocialMessage, ThreadRef
from tests.integration.kafka_helpers import envelopes, own_kafka
from threadlink.config import Settings
from threadlink.devkafka import SCRIPT, local_kafka
from threadlink.topics_admin import apply_topics

PYTHON = sys.executable


def run_script(script: Path, *args: str, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, str(script), *args], capture_output=True, text=True, timeout=60, env={**os.environ, "PATH": path}
    )


@pytest.mark.unit
def test_missing_java_is_one_clear_line(tmp_path: Path) -> None:
    result = run_script(SCRIPT, "up", "--state-dir", str(tmp_path), path=str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().startswith("local kafka: java not found: install a Java 17+ runtime")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.unit
def test_missing_maven_is_one_clear_line(tmp_path: Path) -> None:
    copy = tmp_path / "kafka" / "local_kafka.py"  # a checkout whose jars were never fetched
    copy.parent.mkdir()
    shutil.copy(SCRIPT, copy)
    result = run_script(copy, "fetch", path=str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "local kafka: mvn not found: install Maven to fetch Kafka from Maven Central (Debian: apt-get install -y maven)"
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    yield from own_kafka("cluster", "the 3-node cluster")


def message(n: int) -> Envelope[SocialMessage]:
    thread = ThreadRef(platform="slack", workspace="T1", channel="C1", thread_id=str(n))
    data = SocialMessage(thread=thread, message_id=str(n), author=Author(id="U1"), text=f"m{n}")
    return Envelope.wrap(data, type=events.SOCIAL_MESSAGE.format(action="posted"), source_system="slack")


@pytest.mark.integration
def test_three_node_cluster_keeps_acknowledged_events_when_a_broker_dies(cluster: object, namespace: str) -> None:
    module = local_kafka()
    servers = module.bootstrap_servers("cluster")
    settings = Settings(kafka={"bootstrap_servers": servers, "namespace": f"{namespace}-rf3", "replication_factor": 3})
    apply_topics(settings)
    topic = settings.kafka.topics.social_events
    admin = KafkaAdminClient(bootstrap_servers=servers.split(","))
    try:
        described = admin.describe_topics([topic])[0]
        assert {len(p["replica_nodes"]) for p in described["partitions"]} == {3}
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        assert "'min.insync.replicas'" in str(configs) and "'2'" in str(configs)
    finally:
        admin.close()

    async def publish(numbers: range) -> None:
        publisher = KafkaPublisher(servers, client_id="tests")
        try:
            for n in numbers:
                await publisher.publish(topic, str(n), message(n))
        finally:
            publisher.close()

    asyncio.run(publish(range(10)))
    cluster.kill_node(2)  # type: ignore[attr-defined]
    asyncio.run(publish(range(10, 20)))  # 2 of 3 in sync: acks=all still succeeds
    got = sorted(int(e.data.message_id) for e in envelopes(servers, topic, SocialMessage))
    assert got == list(range(20))
    assert any("node 2" in line and "stopped" in line for line in cluster.status())  # type: ignore[attr-defined]
    cluster.up(quiet=True)  # type: ignore[attr-defined]  # brings the dead node back
    assert all("serving" in line for line in cluster.status())  # type: ignore[attr-defined]


@pytest.mark.unit
def test_cluster_ids_never_look_like_an_option(tmp_path: Path) -> None:
    # A base64 id starts with '-' one time in 64; the storage tool then reads it as an option.
    module = local_kafka()
    ids = [module.LocalKafka("single", tmp_path / str(n))._cluster_id() for n in range(300)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
