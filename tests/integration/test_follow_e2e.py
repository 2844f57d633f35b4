"""Follow and the loop back from the sinks, as a user sees them: real broker, real connectors and
streams processes, the Slack and Jira stand-ins. A ticket that changes updates its cards in
place; a burst of changes is one update; an edit or a deletion takes the card back; a card that
cannot be posted says so in the links topic instead of being counted as posted.

"Nothing more happened" is never checked by sleeping: a later change is made and awaited (a
sentinel on the same keys), so a late duplicate would have arrived before it."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas.links import Link
from tests.integration.kafka_helpers import envelopes, wait_for
from tests.integration.sandbox_deployment import SandboxDeployment, start_sandbox, stop_sandbox

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture(scope="module")
def sandbox(
    kafka_bootstrap: str, namespace: str, tmp_path_factory: pytest.TempPathFactory, vendor_specs: str
) -> Iterator[SandboxDeployment]:
    run_dir: Path = tmp_path_factory.mktemp("follow")
    deployment = start_sandbox(kafka_bootstrap, f"{namespace}-follow", run_dir)
    yield deployment
    stop_sandbox(deployment)
    deployment.slack.assert_no_violations()
    deployment.jira.assert_no_violations()


@pytest.fixture
def channel() -> str:
    return "C" + secrets.token_hex(4).upper()


def issue(sandbox: SandboxDeployment, key: str, status: str, summary: str = "Checkout fails") -> None:
    sandbox.loop.run(sandbox.jira.put_issue(key, summary, status=status, assignee="Ada Lovelace"))


def card_of(sandbox: SandboxDeployment, channel: str, ts: str, key: str) -> dict[str, Any] | None:
    return next((m for m in sandbox.cards(channel, ts) if m.get("blocks") and key in m.get("text", "")), None)


def updates_of(sandbox: SandboxDeployment, card_ts: str) -> list[Any]:
    return [call for call in sandbox.slack.calls("chat.update") if call.params.get("ts") == card_ts]


def shows(card: dict[str, Any] | None, text: str) -> bool:
    return card is not None and text in json.dumps(card.get("blocks"))


def test_a_ticket_change_updates_every_linked_card_in_place_once_and_tells_the_threads(
    sandbox: SandboxDeployment,
) -> None:
    issue(sandbox, "FOL-1", "To Do")
    threads = []
    for _ in range(2):
        channel = "C" + secrets.token_hex(4).upper()
        ts = sandbox.post(channel, "Is FOL-1 the checkout problem?")
        card = wait_for(lambda c=channel, t=ts: card_of(sandbox, c, t, "FOL-1"), what="the FOL-1 card")
        threads.append((channel, ts, card["ts"]))

    issue(sandbox, "FOL-1", "In Progress")
    for channel, ts, card_ts in threads:
        wait_for(lambda c=channel, t=ts: shows(card_of(sandbox, c, t, "FOL-1"), "In Progress"), what="the update")
        assert card_of(sandbox, channel, ts, "FOL-1")["ts"] == card_ts  # in place, not a new card
        replies = wait_for(
            lambda c=channel, t=ts: [m for m in sandbox.thread(c, t) if "To Do → In Progress" in m.get("text", "")],
            what="the status reply in the thread",
        )
        assert len(replies) == 1

    # The sentinel: a later change, awaited. Had the first been carried out twice, it would show.
    issue(sandbox, "FOL-1", "Done")
    for channel, ts, card_ts in threads:
        wait_for(lambda c=channel, t=ts: shows(card_of(sandbox, c, t, "FOL-1"), "Done"), what="the second update")
        assert len(updates_of(sandbox, card_ts)) == 2


def test_a_burst_of_changes_within_the_window_is_one_update_per_card(sandbox: SandboxDeployment, channel: str) -> None:
    issue(sandbox, "FOL-2", "To Do")
    ts = sandbox.post(channel, "FOL-2?")
    card_ts = wait_for(lambda: card_of(sandbox, channel, ts, "FOL-2"), what="the FOL-2 card")["ts"]
    for n in range(10):
        issue(sandbox, "FOL-2", "To Do", summary=f"Checkout fails (try {n})")
    wait_for(lambda: shows(card_of(sandbox, channel, ts, "FOL-2"), "(try 9)"), what="the last version on the card")
    issue(sandbox, "FOL-2", "Done", summary="Checkout fails (try 9)")  # sentinel, after the window
    wait_for(lambda: shows(card_of(sandbox, channel, ts, "FOL-2"), "Done"), what="the sentinel update")
    assert len(updates_of(sandbox, card_ts)) == 2


def test_an_edit_that_drops_the_key_removes_the_card_and_a_deletion_removes_its_cards(
    sandbox: SandboxDeployment, channel: str
) -> None:
    issue(sandbox, "FOL-3", "To Do")
    issue(sandbox, "FOL-4", "To Do")
    ts = sandbox.post(channel, "FOL-3 or FOL-4?")
    wait_for(lambda: card_of(sandbox, channel, ts, "FOL-3") and card_of(sandbox, channel, ts, "FOL-4"), what="cards")
    sandbox.loop.run(sandbox.slack.edit_user_message(channel, ts, "only FOL-4"))
    wait_for(lambda: card_of(sandbox, channel, ts, "FOL-3") is None, what="the FOL-3 card deleted")
    assert card_of(sandbox, channel, ts, "FOL-4") is not None

    reply = sandbox.post(channel, "and FOL-3 after all", thread_ts=ts)
    wait_for(lambda: card_of(sandbox, channel, ts, "FOL-3"), what="a new FOL-3 card for the new mention")
    sandbox.loop.run(sandbox.slack.delete_user_message(channel, reply))
    wait_for(lambda: card_of(sandbox, channel, ts, "FOL-3") is None, what="its card deleted with the message")
    assert card_of(sandbox, channel, ts, "FOL-4") is not None


def test_a_card_that_cannot_be_posted_is_a_failed_link_not_a_posted_one(sandbox: SandboxDeployment) -> None:
    issue(sandbox, "FOL-5", "To Do")
    archived = "C" + secrets.token_hex(4).upper()

    async def archive() -> None:  # on the stand-in's own loop
        sandbox.slack.add_channel(archived, archived=True)

    sandbox.loop.run(archive())
    sandbox.post(archived, "FOL-5 is back")
    kafka = sandbox.settings.kafka

    def link() -> Link | None:
        found = [e.data for e in envelopes(kafka.bootstrap_servers or "", kafka.topics.links, Link)]
        return next((lk for lk in found if lk.thread.channel == archived and lk.status == "failed"), None)

    failed = wait_for(link, what="the link marked failed")
    assert failed.reason and "is_archived" in failed.reason and failed.card_message_id is None
