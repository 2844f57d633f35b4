"""Shared fixtures. Kafka is the real broker from deploy/kafka: tests reuse one that serves at
$THREADLINK_TEST_BOOTSTRAP (default 127.0.0.1:9092) or start it themselves, and every test
session uses its own topic namespace so runs never see each other's data."""

from __future__ import annotations

import os
import secrets

import pytest

from sandbox.contracts import SpecsMissing, specs_dir
from threadlink.devkafka import local_kafka

BOOTSTRAP = os.environ.get("THREADLINK_TEST_BOOTSTRAP", "127.0.0.1:9092")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    module = local_kafka()
    port = BOOTSTRAP.split(",")[0].rsplit(":", 1)[1]
    if module.serves_requests(int(port)):
        yield BOOTSTRAP
        return
    if BOOTSTRAP != "127.0.0.1:9092":
        pytest.fail(f"no Kafka broker answers at {BOOTSTRAP} ($THREADLINK_TEST_BOOTSTRAP)")
    kafka = module.LocalKafka("single")
    try:
        servers = kafka.up(quiet=True)
    except module.LocalKafkaError as exc:
        pytest.fail(f"could not start the local Kafka broker: {exc}")
    yield servers
    kafka.down(quiet=True)


@pytest.fixture(scope="session")
def namespace() -> str:
    return f"t{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def vendor_specs() -> str:
    """The vendor specs directory; a clear failure (not a silent pass) when it is absent."""
    directory = specs_dir()
    if not directory.is_dir():
        raise SpecsMissing(
            f"vendor specs directory {directory} is missing: set THREADLINK_SPECS_DIR "
            "to the folder holding slack/, jira/, github/ and matrix/ (CI uses ../shared/specs)"
        )
    return str(directory)
