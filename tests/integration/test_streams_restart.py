"""A streams worker restarted with a backlog processes every message of it, every time.

faust-streaming used to skip a block of the records waiting for a worker that starts (see
streams/faust_fixes.py): this stops the real `threadlink streams run` worker, produces 2,000
messages while it is down, starts it again, and checks that every one of them got its card,
twenty times in a row, counting every message (not only the last offset)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas import events
from schemas.commands import Command, PostCard
from schemas.envelope import Envelope
from schemas.records import RecordRef, TicketRecord
from schemas.social import Author, SocialMessage, ThreadRef
from tests.integration.kafka_helpers import TopicTail, produce, wait_for
from threadlink.config import Settings
from threadlink.launcher import ChildProcesses, write_config
from threadlink.topics_admin import apply_topics

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

TICKETS = 200
BACKLOG = 2_000
RESTARTS = int(os.environ.get("THREADLINK_TEST_RESTARTS", "20"))


def ticket(n: int) -> tuple[str, Envelope[TicketRecord]]:
    record = TicketRecord(
        ref=RecordRef(system="jira", key=f"RST-{n + 1}"), title=f"Ticket {n + 1}", status="Open", version=1
    )
    envelope = Envelope.wrap(
        record, type=events.RECORD_UPSERTED.format(kind="ticket"), source_system="jira", subject=record.ref.id
    )
    return record.ref.id, envelope


def message(cycle: int, n: int) -> tuple[str, Envelope[SocialMessage]]:
    thread = ThreadRef(platform="slack", workspace="T1", channel=f"C{cycle}", thread_id=f"{cycle}.{n:06d}")
    data = SocialMessage(
        thread=thread, message_id=thread.thread_id, author=Author(id="U1"), text=f"is it RST-{n % TICKETS + 1}?"
    )
    envelope = Envelope.wrap(
        data, type=events.SOCIAL_MESSAGE.format(action="posted"), source_system="slack", subject=thread.id
    )
    return thread.id, envelope


def deployment(kafka_bootstrap: str, ns: str, state_dir: Path) -> Settings:
    return Settings(
        kafka={"bootstrap_servers": kafka_bootstrap, "namespace": ns},
        streams={"app_id": ns, "web_port": 0, "state_dir": str(state_dir)},
        # Only their commands topics matter here: no connectors process runs.
        connectors={
            "slack": {"signing_secret": "unused", "bot_token": "xoxb-unused"},
            "jira": {"base_url": "http://127.0.0.1:9", "email": "x@y", "api_token": "u", "webhook_secret": "u"},
        },
    )


@pytest.fixture
def workers(kafka_bootstrap: str, namespace: str, tmp_path: Path) -> Iterator[tuple[Settings, list[ChildProcesses]]]:
    """Two workers of one app, each with its own state directory, as on two machines."""
    ns = f"{namespace}-restart-{tmp_path.name[-6:].lower()}"
    settings = deployment(kafka_bootstrap, ns, tmp_path / "a")
    apply_topics(settings)
    pair = [
        ChildProcesses(
            write_config(deployment(kafka_bootstrap, ns, tmp_path / n), tmp_path / f"{n}.yaml"), tmp_path / n
        )
        for n in ("a", "b")
    ]
    yield settings, pair
    for children in pair:
        children.stop()


def cards_for(tail: TopicTail) -> set[str]:
    """The messages that got a card (PostCard commands, by the message they answer)."""
    return {e.data.in_reply_to for e in tail.read() if isinstance(e.data, PostCard) and e.data.in_reply_to}


@pytest.mark.parametrize(
    ("restarts", "with_second_worker"),
    [(RESTARTS, False), (max(1, RESTARTS // 4), True)],
    ids=["one-worker", "second-worker-joins-during-the-backlog"],
)
def test_a_worker_restarted_with_a_backlog_processes_all_of_it_every_time(
    workers: tuple[Settings, list[ChildProcesses]], restarts: int, with_second_worker: bool
) -> None:
    settings, (children, second) = workers
    kafka = settings.kafka
    bootstrap, topics = kafka.bootstrap_servers or "", kafka.topics
    produce(bootstrap, topics.records, (ticket(n) for n in range(TICKETS)))
    children.start("streams", "streams", "run")
    tail = TopicTail(bootstrap, topics.commands("slack"), Command)
    try:
        # Warm: the worker has the tickets and answers a first batch.
        produce(bootstrap, topics.social_events, (message(-1, n) for n in range(TICKETS)))
        wait_for(lambda: len(cards_for(tail)) >= TICKETS, timeout_s=180, what="the first cards")
        for cycle in range(restarts):
            children.stop_one("streams")
            backlog = [message(cycle, n) for n in range(BACKLOG)]
            produce(bootstrap, topics.social_events, backlog)
            children.start("streams", "streams", "run")
            if with_second_worker:
                # The group rebalances while the backlog waits: partitions move to it and back.
                time.sleep(2)
                second.start("streams", "streams", "run")
            expected = {envelope.data.message_id for _, envelope in backlog}
            wait_for(
                lambda expected=expected: expected <= cards_for(tail),  # type: ignore[misc]
                timeout_s=240,
                interval_s=1,
                what=f"a card for each of the {BACKLOG} waiting messages after restart {cycle + 1}",
            )
            children.check_alive()
            if with_second_worker:
                second.stop_one("streams")
    finally:
        tail.close()
