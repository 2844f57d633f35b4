"""`threadlink backfill slack` on the real broker against the local Slack stand-in (which checks
every request against Slack's Web API spec): old threads become social events, at most once
per message across an interruption, resumed from the checkpoint."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.runtime.kafka import KafkaPublisher
from connectors.slack.backfill import CheckpointStore, SlackBackfill
from connectors.slack.client import SlackClient
from connectors.slack.config import SlackConfig
from connectors.slack.mapping import SlackIdentity
from sandbox.slack_api import FakeSlack
from schemas.social import SocialEvent, SocialMessage
from tests.integration.kafka_helpers import envelopes
from threadlink import cli
from threadlink.config import Settings
from threadlink.topics_admin import apply_topics

pytestmark = pytest.mark.integration

SECRET = "backfill-signing-secret"
TOKEN = "xoxb-backfill-token-not-real"
CHANNEL = "C0BACKFILL"
SINCE = datetime.now(UTC) - timedelta(days=1)


@pytest.fixture
async def slack(vendor_specs: str) -> Any:
    fake = FakeSlack(signing_secret=SECRET, bot_token=TOKEN, strict=True)
    await fake.start()
    fake.add_channel(CHANNEL, "group")
    yield fake
    await fake.stop()


def seed(slack: FakeSlack) -> dict[str, list[str]]:
    """Five threads: roots with 0..4 replies."""
    threads: dict[str, list[str]] = {}
    for n in range(5):
        root = slack.add_history(CHANNEL, f"question {n}: is OPS-{n + 1} done?")
        threads[root] = [slack.add_history(CHANNEL, f"reply {r}", user="U0002", thread_ts=root) for r in range(n)]
    return threads


def settings_for(kafka_bootstrap: str, ns: str) -> Settings:
    settings = Settings(kafka={"bootstrap_servers": kafka_bootstrap, "namespace": ns})
    apply_topics(settings)
    return settings


class DiesAfterFirstCheckpoint(CheckpointStore):
    """The process is killed right after its first page is checkpointed."""

    saves = 0

    async def save(self, source: str, cursor: dict[str, Any]) -> None:
        await super().save(source, cursor)
        self.saves += 1
        if self.saves == 1:
            raise KeyboardInterrupt


async def test_a_backfill_interrupted_after_a_page_resumes_and_publishes_each_message_once(
    slack: FakeSlack, kafka_bootstrap: str, namespace: str
) -> None:
    threads = seed(slack)
    settings = settings_for(kafka_bootstrap, f"{namespace}-backfill")
    topics = settings.kafka.topics
    publisher = KafkaPublisher(kafka_bootstrap, client_id="tests-backfill")
    config = SlackConfig(signing_secret=SECRET, bot_token=TOKEN, api_base_url=slack.api_url)
    client = SlackClient(config)

    def job(store: CheckpointStore) -> SlackBackfill:
        return SlackBackfill(
            "slack", client, SlackIdentity(), publisher, topics, store, calls_per_minute=6_000, page_size=2
        )

    try:
        first = DiesAfterFirstCheckpoint(kafka_bootstrap, topics, publisher, "slack")
        with pytest.raises(KeyboardInterrupt):
            await job(first).run(CHANNEL, SINCE)
        report = await job(CheckpointStore(kafka_bootstrap, topics, publisher, "slack")).run(CHANNEL, SINCE)
        assert report.resumed
        again = await job(CheckpointStore(kafka_bootstrap, topics, publisher, "slack")).run(CHANNEL, SINCE)
        assert again.already_done
    finally:
        await client.aclose()
        publisher.close()

    landed = [e for e in envelopes(kafka_bootstrap, topics.social_events, SocialEvent)]
    counts = Counter(e.id for e in landed)
    assert max(counts.values()) == 1, "a message was published twice"
    expected = {ts for root, replies in threads.items() for ts in (root, *replies)}
    assert {e.data.message_id for e in landed} == expected
    for envelope in landed:
        message = envelope.data
        assert isinstance(message, SocialMessage) and message.action == "posted"
        assert message.thread.thread_id in threads  # every reply in its root's thread
        assert envelope.subject == message.thread.id
        assert message.channel_visibility == "restricted"  # a private channel, from conversations.info
    assert report.messages == len(expected) and report.threads == 4
    slack.assert_no_violations()


async def test_the_cli_backfills_waits_out_a_429_and_says_what_it_did(
    slack: FakeSlack, kafka_bootstrap: str, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    threads = seed(slack)
    slack.add_history(CHANNEL, "bridged", user="U0003")  # plain user message: kept
    ns = f"{namespace}-backfill-cli"
    settings_for(kafka_bootstrap, ns)
    config = tmp_path / "threadlink.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "kafka": {"bootstrap_servers": kafka_bootstrap, "namespace": ns},
                "streams": {"mention_patterns": []},
                "connectors": {
                    "slack-acme": {
                        "type": "slack",
                        "signing_secret": SECRET,
                        "bot_token": TOKEN,
                        "api_base_url": slack.api_url,
                    }
                },
            }
        )
    )
    slack.fail_next("conversations.history", status=429, retry_after=1)
    args = ["backfill", "slack", "--channel", CHANNEL, "--since", SINCE.isoformat(), "--config", str(config)]
    assert await _run_cli([*args, "--calls-per-minute", "6000"]) == 0
    out = capsys.readouterr().out
    total = sum(1 + len(replies) for replies in threads.values()) + 1
    assert f"{CHANNEL}: {total} messages in 4 threads" in out
    assert len(slack.calls("conversations.history")) >= 2  # the 429, then the page
    assert await _run_cli(args) == 0
    assert "already backfilled" in capsys.readouterr().out
    slack.assert_no_violations()


async def _run_cli(args: list[str]) -> int:
    import asyncio

    # The CLI runs its own event loop: off this test's loop, on a thread.
    return await asyncio.to_thread(cli.main, args)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--since", "last tuesday"], "is not a date"),
        (["--since", "2026-11-02", "--until", "2026-11-01"], "is not after --since"),
        (["--since", "2026-11-01", "--calls-per-minute", "0"], "is not a rate"),
        (["--since", "2026-11-01", "--connector", "nope"], "no Slack connector of that name"),
    ],
)
def test_bad_arguments_are_a_clear_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    config = tmp_path / "threadlink.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "kafka": {"bootstrap_servers": "127.0.0.1:9"},
                "streams": {"mention_patterns": []},
                "connectors": {"slack": {"signing_secret": SECRET, "bot_token": TOKEN}},
            }
        )
    )
    try:
        code = cli.main(["backfill", "slack", "--channel", CHANNEL, "--config", str(config), *extra])
    except SystemExit as exc:  # argparse's usage error
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    assert code != 0
    assert message in captured.err
    assert "Traceback" not in captured.err
