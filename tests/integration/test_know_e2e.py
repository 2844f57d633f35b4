"""Know as support staff see it: articles published on the records topic (as a CMS connector
does), a question asked in Slack, the suggestion in its thread; real broker, real connectors
and streams processes, the Slack and Jira stand-ins."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.know import labelled_set
from connectors.runtime.kafka import KafkaPublisher
from schemas import events
from schemas.envelope import Envelope
from tests.integration.kafka_helpers import wait_for
from tests.integration.sandbox_deployment import SandboxDeployment, start_sandbox, stop_sandbox
from threadlink.config import Settings
from threadlink.topics_admin import apply_topics

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture(scope="module")
def sandbox(
    kafka_bootstrap: str, namespace: str, tmp_path_factory: pytest.TempPathFactory, vendor_specs: str
) -> Iterator[SandboxDeployment]:
    run_dir: Path = tmp_path_factory.mktemp("know")
    # The CMS published its articles before the worker starts: a starting worker reads them all
    # before it serves (streams.know.startup_wait_s), so the first question finds them.
    settings = Settings(kafka={"bootstrap_servers": kafka_bootstrap, "namespace": f"sandbox-{namespace}-know"})
    apply_topics(settings)
    publisher = KafkaPublisher(kafka_bootstrap, client_id="tests-know")

    async def publish() -> None:
        for article in labelled_set()[0]:
            envelope = Envelope.wrap(
                article, type=events.RECORD_UPSERTED.format(kind="article"), source_system="wp", subject=article.ref.id
            )
            await publisher.publish(settings.kafka.topics.records, article.ref.id, envelope)

    try:
        asyncio.run(publish())
    finally:
        publisher.close()
    deployment = start_sandbox(kafka_bootstrap, f"{namespace}-know", run_dir)
    assert deployment.settings.kafka.topics.records == settings.kafka.topics.records
    yield deployment
    stop_sandbox(deployment)
    deployment.slack.assert_no_violations()


def suggestions(sandbox: SandboxDeployment, channel: str, ts: str) -> list[str]:
    return [m.get("text", "") for m in sandbox.thread(channel, ts) if "These articles may help" in m.get("text", "")]


def test_a_question_gets_the_article_that_answers_it_and_small_talk_gets_nothing(sandbox: SandboxDeployment) -> None:
    channel = "C" + secrets.token_hex(4).upper()
    root = sandbox.post(channel, "Is the canteen open on Saturday?")
    sandbox.post(channel, "Why does the VPN keep disconnecting every few minutes?", thread_ts=root, user="U0002")
    [said] = wait_for(lambda: suggestions(sandbox, channel, root), timeout_s=120, what="the suggestion")
    assert "Connecting to the VPN" in said and "https://kb.example/kb-4" in said
    # The VPN question came after the canteen one in the same thread: had small talk been
    # answered, that suggestion would be there too.
    assert len(suggestions(sandbox, channel, root)) == 1
