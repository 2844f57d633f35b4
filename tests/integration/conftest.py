"""Fixtures shared by the integration tests (the broker ones are in tests/conftest.py)."""

from __future__ import annotations

import pytest

from schemas.topics import TopicNames
from threadlink.config import Settings
from threadlink.topics_admin import apply_topics


@pytest.fixture
def sink_topics(kafka_bootstrap: str, namespace: str, request: pytest.FixtureRequest) -> TopicNames:
    """A namespace of its own per test with the catalog's topics, and a sink named `echo`."""
    ns = f"{namespace}-{request.node.name[-20:].lower().replace('_', '-')}"
    settings = Settings(
        kafka={"bootstrap_servers": kafka_bootstrap, "namespace": ns}, connectors={"echo": {"type": "slack"}}
    )
    apply_topics(settings)
    return settings.kafka.topics
