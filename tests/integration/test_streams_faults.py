"""Faults in the middle of the work, end to end: real broker, real connectors and streams
processes, the Slack and Jira stand-ins.

- A streams worker killed (SIGKILL) in the middle of a burst of ticket changes, and started
  again, leaves every card showing the ticket's final version, and no card ever went back to an
  older version after showing a newer one.
- A broker restarted during a burst of mentions loses none of them: every mention gets its card,
  exactly once. The broker is a spare one of this test's own (deploy/kafka `spare` layout), so
  the shared broker keeps serving everyone else.

"Nothing more happened" is never checked by sleeping: a later change or mention on the same keys
is made and awaited (a sentinel), so a late or duplicate effect would have arrived before it."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas.commands import Command, UpdateCard
from schemas.topics import STREAM_PARTITIONS
from tests.integration.kafka_helpers import TopicTail, key_on_partition_of, own_kafka, wait_for
from tests.integration.sandbox_deployment import SandboxDeployment, start_sandbox, stop_sandbox
from threadlink.devkafka import local_kafka

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

#: Card text is `KEY: Burst v007 (Status)`: the version is in the title, so every update shows it.
VERSION = re.compile(r"Burst v(\d{3})")
ROUNDS = 40
KILL_AFTER = ROUNDS // 3
HOLD_AT = 2 * ROUNDS // 3 + 1


def issue(sandbox: SandboxDeployment, key: str, summary: str, status: str = "In Progress") -> None:
    sandbox.loop.run(sandbox.jira.put_issue(key, summary, status=status, assignee="Ada Lovelace"))


def card_of(sandbox: SandboxDeployment, channel: str, ts: str, key: str) -> dict[str, Any] | None:
    return next((m for m in sandbox.cards(channel, ts) if m.get("blocks") and key in m.get("text", "")), None)


def version_in(text: str) -> int:
    match = VERSION.search(text)
    assert match, f"no burst version in {text!r}"
    return int(match.group(1))


def shown_versions(sandbox: SandboxDeployment, card_ts: str) -> list[tuple[int, str]]:
    """Every chat.update of one card, in the order Slack got them: (version, text)."""
    texts = [str(c.params.get("text", "")) for c in sandbox.slack.calls("chat.update") if c.params.get("ts") == card_ts]
    return [(version_in(text), text) for text in texts]


def warm_up(sandbox: SandboxDeployment) -> None:
    """Wait until a mention gets its card: the streams worker has started and the whole loop
    works, so the fault comes to a running deployment. A worker starting for the first time in
    a namespace can miss an event that arrives meanwhile (seen on a fresh broker under load: the
    event dead-lettered with PartitionsMismatch, its changelog topic just created and not yet in
    the worker's metadata, or not handled at all), so a mention with no card is followed by
    another. That start-up race is a bug of its own, not what these tests are about."""
    issue(sandbox, "WARM-1", "Warm-up")
    for attempt in range(1, 6):
        channel = "C" + secrets.token_hex(4).upper()
        ts = sandbox.post(channel, "warming up with WARM-1")
        try:
            wait_for(lambda c=channel, t=ts: card_of(sandbox, c, t, "WARM-1"), timeout_s=60, what="the warm-up card")
            return
        except AssertionError:
            if attempt == 5:
                raise
            sandbox.children.check_alive()


@pytest.fixture
def sandbox(kafka_bootstrap: str, namespace: str, tmp_path: Path, vendor_specs: str) -> Iterator[SandboxDeployment]:
    deployment = start_sandbox(kafka_bootstrap, f"{namespace}-kill-{secrets.token_hex(2)}", tmp_path / "deployment")
    yield deployment
    stop_sandbox(deployment)
    deployment.slack.assert_no_violations()
    deployment.jira.assert_no_violations()


def test_a_worker_killed_in_the_middle_of_a_burst_leaves_every_card_showing_the_final_version(
    sandbox: SandboxDeployment,
) -> None:
    warm_up(sandbox)
    tickets = ["BRST-1", "BRST-2"]
    for key in tickets:
        issue(sandbox, key, "Burst v000")
    cards: dict[str, list[str]] = {key: [] for key in tickets}  # ticket -> the ts of its cards
    for key in tickets:
        for _ in range(3):
            channel = "C" + secrets.token_hex(4).upper()
            ts = sandbox.post(channel, f"Is {key} the one?")
            card = wait_for(lambda c=channel, t=ts, k=key: card_of(sandbox, c, t, k), timeout_s=120, what="a card")
            cards[key].append(card["ts"])

    kafka = sandbox.settings.kafka
    commands = TopicTail(kafka.bootstrap_servers or "", kafka.topics.commands("slack"), Command)
    failures: list[BaseException] = []
    killed = threading.Event()

    def burst() -> None:
        try:
            for n in range(1, ROUNDS + 1):
                if n == HOLD_AT:
                    killed.wait(300)  # the last third comes while the worker is down or starting
                for key in tickets:
                    issue(sandbox, key, f"Burst v{n:03d}")
        except BaseException as exc:  # seen by the test thread, which asserts on it
            failures.append(exc)

    def updates_sent_from(version: int) -> bool:
        return any(
            isinstance(e.data, UpdateCard) and version_in(e.data.record.title) >= version for e in commands.read()
        )

    changes = threading.Thread(target=burst, name="burst", daemon=True)
    try:
        changes.start()
        # The worker is in the middle of the burst: it has sent updates for a third of it, and
        # the second third is on its way or waiting for it.
        wait_for(lambda: updates_sent_from(KILL_AFTER), timeout_s=180, what=f"updates for v{KILL_AFTER:03d}")
        sandbox.children.kill_one("streams")
        killed.set()
        sandbox.children.start("streams", "streams", "run")
        changes.join(300)
        assert not changes.is_alive() and not failures, failures
    finally:
        commands.close()

    final = f"Burst v{ROUNDS:03d}"
    for key, card_ts_list in cards.items():
        for card_ts in card_ts_list:
            wait_for(
                lambda t=card_ts: (shown := shown_versions(sandbox, t)) and shown[-1][0] == ROUNDS,
                timeout_s=300,
                interval_s=1,
                what=f"{key}'s card {card_ts} showing {final}",
            )
    # The sentinel: one more change, after the final version showed. Any late update of an older
    # version (a replay of the worker's, a redelivered command) is on the same keys before it.
    for key in tickets:
        issue(sandbox, key, final, status="Done")
    for key, card_ts_list in cards.items():
        for card_ts in card_ts_list:
            wait_for(
                lambda t=card_ts: (shown := shown_versions(sandbox, t)) and "(Done)" in shown[-1][1],
                timeout_s=300,
                interval_s=1,
                what=f"the sentinel update of {key}'s card {card_ts}",
            )
            versions = [version for version, _ in shown_versions(sandbox, card_ts)]
            assert versions == sorted(versions), f"{key}'s card {card_ts} went back to an older version: {versions}"
            before_sentinel = [text for _, text in shown_versions(sandbox, card_ts)][-2]
            assert final in before_sentinel and "(In Progress)" in before_sentinel, before_sentinel
    sandbox.children.check_alive()


# -- broker restart ----------------------------------------------------------------------------

MENTIONS = 36
TICKETS = ["RBR-1", "RBR-2", "RBR-3"]


@pytest.fixture(scope="module")
def spare_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A broker of this module's own, to restart at will (never the shared one)."""
    yield from own_kafka("spare", "the spare Kafka broker", tmp_path_factory.mktemp("spare-kafka"))


@pytest.fixture
def on_spare(spare_kafka: Any, namespace: str, tmp_path: Path, vendor_specs: str) -> Iterator[SandboxDeployment]:
    servers = local_kafka().bootstrap_servers("spare")
    deployment = start_sandbox(servers, f"{namespace}-restart-{secrets.token_hex(2)}", tmp_path / "deployment")
    # Slack retries a delivery that failed at once, after 1 minute and after 5 minutes; the
    # stand-in's default retries come within a second, sooner than a broker restarts. Slack's own
    # schedule: a broker killed on a loaded 2-core machine once took the connectors past 80 s.
    deployment.slack.retry_delays_s = (1.0, 60.0, 300.0)
    yield deployment
    stop_sandbox(deployment)
    deployment.slack.assert_no_violations()
    deployment.jira.assert_no_violations()


def sentinel_key(key: str) -> str:
    """A ticket whose record is on `key`'s partition: its link requests queue behind `key`'s."""
    project = key.split("-")[0] + "S"
    record_id = key_on_partition_of(f"jira:{key}", STREAM_PARTITIONS, lambda n: f"jira:{project}-{n}")
    return record_id.removeprefix("jira:")


def attempts_of(sandbox: SandboxDeployment, event_ids: list[str], since: float) -> str:
    """Every delivery of these events: (retry, status or failure, seconds after `since`)."""
    lines = []
    for event_id in event_ids:
        tries = [
            (d.retry_num, d.status or d.reason, round(d.at - since, 1))
            for d in sandbox.slack.deliveries
            if d.event_id == event_id
        ]
        lines.append(f"  {event_id}: {tries}")
    return "\n".join(lines)


def warnings_in(log: Path, last: int = 40) -> str:
    """The log's last warnings and errors, without the client's connection chatter."""
    if not log.exists():
        return f"  ({log} is missing)"
    noisy = ("kafka.net", "kafka.cluster", "kafka.coordinator", "Expiring")
    lines = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if (" WARNING " in line or " ERROR " in line) and not any(n in line for n in noisy)
    ]
    return "\n".join(f"  {line[:300]}" for line in lines[-last:])


def refused_once(sandbox: SandboxDeployment, numbers: range) -> bool:
    ids = {e["event_id"]: e["event"].get("text", "") for e in list(sandbox.slack.events)}
    refused = {ids.get(d.event_id, "").split(":")[0] for d in list(sandbox.slack.deliveries) if d.reason}
    return all(f"mention {n}" in refused for n in numbers)


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_a_broker_restart_during_a_burst_of_mentions_loses_nothing(
    on_spare: SandboxDeployment, spare_kafka: Any, how: str
) -> None:
    sandbox = on_spare
    warm_up(sandbox)
    for key in TICKETS:
        issue(sandbox, key, f"Restart {key}")
    sentinels = {key: sentinel_key(key) for key in TICKETS}
    for sentinel in sentinels.values():
        issue(sandbox, sentinel, f"Sentinel {sentinel}")
    mentions = [("C" + secrets.token_hex(4).upper(), TICKETS[n % len(TICKETS)]) for n in range(MENTIONS)]
    posted: dict[int, str] = {}

    async def post(n: int) -> None:
        channel, key = mentions[n]
        posted[n] = await sandbox.slack.post_user_message(channel, f"mention {n}: is it {key}?")

    async def post_all(numbers: range) -> None:
        await asyncio.gather(*(post(n) for n in numbers))

    def launch(numbers: range) -> Any:
        return asyncio.run_coroutine_threadsafe(post_all(numbers), sandbox.loop.loop)

    third = MENTIONS // 3
    sandbox.loop.run(post_all(range(third)))  # accepted: the pipeline is busy with them
    if how == "stopped":
        spare_kafka.down(quiet=True)
    else:
        spare_kafka.kill_node(1)
    while_down = range(third, 2 * third)
    during = launch(while_down)
    # Every one of them was refused (or timed out) at least once before the broker comes back.
    wait_for(lambda: refused_once(sandbox, while_down), timeout_s=120, what="the deliveries refused while it is down")
    back_at = time.time()
    spare_kafka.up(quiet=True)
    up_took_s = time.time() - back_at
    after = launch(range(2 * third, MENTIONS))
    during.result(420)  # the last retry comes 361 s after the first attempt
    after.result(420)

    accepted = {d.event_id for d in sandbox.slack.deliveries if d.status is not None and 200 <= d.status < 300}
    event_of = {e["event"].get("ts"): e["event_id"] for e in sandbox.slack.events if not e["event"].get("subtype")}
    refused = [n for n, ts in posted.items() if event_of[ts] not in accepted]
    assert len(posted) == MENTIONS
    assert not refused, (
        f"Slack gave up on mentions {refused}: the stand-in's retries ended before the broker was back "
        f"(its start took {up_took_s:.0f} s)\n"
        + attempts_of(sandbox, [event_of[posted[n]] for n in refused[:4]], back_at)
        + "\nthe connectors' last warnings:\n"
        + warnings_in(sandbox.children.log_dir / "connectors.log")
    )

    for n, (channel, key) in enumerate(mentions):
        wait_for(
            lambda c=channel, t=posted[n], k=key: card_of(sandbox, c, t, k),
            timeout_s=300,
            interval_s=1,
            what=f"the card of mention {n} ({key} in {channel})",
        )
    # The sentinels: a second mention in every thread, of a ticket on the partition of the first.
    for n, (channel, key) in enumerate(mentions):
        sandbox.post(channel, f"or {sentinels[key]}?", thread_ts=posted[n])
    for n, (channel, key) in enumerate(mentions):
        wait_for(
            lambda c=channel, t=posted[n], k=sentinels[key]: card_of(sandbox, c, t, k),
            timeout_s=300,
            interval_s=1,
            what=f"the sentinel card in the thread of mention {n}",
        )
    for n, (channel, key) in enumerate(mentions):
        cards = sandbox.cards(channel, posted[n])
        texts = [c.get("text", "") for c in cards]
        assert sum(key in t for t in texts) == 1, f"mention {n}: {json.dumps(texts)}"
        assert len(cards) == 2, f"mention {n}: {json.dumps(texts)}"
    sandbox.children.check_alive()
