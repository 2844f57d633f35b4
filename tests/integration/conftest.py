"""Fixtures shared by the integration tests (the broker ones are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.matrix.config import MatrixConfig
from connectors.matrix.registration import registration_yaml
from schemas.topics import TopicNames
from threadlink.config import Settings
from threadlink.topics_admin import apply_topics

from .redmine_server import Redmine, RedmineError
from .synapse_server import SERVER_NAME, AppService, Synapse, SynapseError
from .wordpress_server import WordPress, WordPressError


@pytest.fixture
def sink_topics(kafka_bootstrap: str, namespace: str, request: pytest.FixtureRequest) -> TopicNames:
    """A namespace of its own per test with the catalog's topics, and a sink named `echo`."""
    ns = f"{namespace}-{request.node.name[-20:].lower().replace('_', '-')}"
    settings = Settings(
        kafka={"bootstrap_servers": kafka_bootstrap, "namespace": ns}, connectors={"echo": {"type": "slack"}}
    )
    apply_topics(settings)
    return settings.kafka.topics


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    """A real Synapse on 127.0.0.1:19108 (SQLite in memory, federation off) with one application
    service registered, whose transactions go to the `matrix` connector's webhook on 127.0.0.1:19109."""
    workdir = tmp_path_factory.mktemp("synapse")
    appservice = AppService(url="http://127.0.0.1:19109/webhooks/matrix")
    registration = workdir / "appservice.yaml"
    # The file `threadlink matrix registration` prints, so Synapse proves it takes it.
    config = MatrixConfig(
        homeserver_url="http://127.0.0.1:19108",
        server_name=SERVER_NAME,
        url=appservice.url,
        registration_id=appservice.id,
        sender_localpart=appservice.sender_localpart,
        as_token=appservice.as_token,
        hs_token=appservice.hs_token,
    )
    registration.write_text(registration_yaml(config, name="matrix"))
    server = Synapse(port=19108, appservice_files=[registration], workdir=workdir)
    server.appservice = appservice
    try:
        server.start()
    except SynapseError as exc:
        pytest.fail(f"could not start Synapse: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redmine() -> Iterator[Redmine]:
    """A real Redmine 5 (Debian's package, installed here when missing) on a free 127.0.0.1 port,
    SQLite, REST API on, login required; shared by every Redmine test (it takes seconds to start)."""
    server = Redmine()
    try:
        server.start()
    except RedmineError as exc:
        pytest.fail(f"could not start Redmine: {exc}")
    print(f"redmine: {server.timings}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def wordpress() -> Iterator[WordPress]:
    """A real WordPress 6.1 (Debian's package, installed here when missing) on a free 127.0.0.1
    port, MariaDB in a temporary data directory, an application password for the admin; shared by
    every WordPress test (each makes posts of its own)."""
    server = WordPress()
    try:
        server.start()
    except WordPressError as exc:
        pytest.fail(f"could not start WordPress: {exc}")
    print(f"wordpress: {server.timings}")
    yield server
    server.stop()
