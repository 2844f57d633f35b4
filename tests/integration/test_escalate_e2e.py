"""Escalate as support staff see it: real broker, real connectors and streams processes, the
Slack and Jira stand-ins. A reaction (or `@threadlink ticket`) opens one ticket with the thread's
transcript; replies become comments; the agents' public comments come back into the thread,
attributed; internal notes and threadlink's own words never cross; concurrent triggers and a
worker killed in the middle still give exactly one ticket and every comment once.

"Nothing more happened" is never checked by sleeping: a later, awaited event (a sentinel on the
same keys) would have come after any late duplicate."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.kafka_helpers import wait_for
from tests.integration.sandbox_deployment import SandboxDeployment, start_sandbox, stop_sandbox

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

PROJECT = "SUP"


@pytest.fixture(scope="module")
def sandbox(
    kafka_bootstrap: str, namespace: str, tmp_path_factory: pytest.TempPathFactory, vendor_specs: str
) -> Iterator[SandboxDeployment]:
    run_dir: Path = tmp_path_factory.mktemp("escalate")
    deployment = start_sandbox(
        kafka_bootstrap, f"{namespace}-escalate", run_dir, escalate={"target": "jira", "project": PROJECT}
    )
    yield deployment
    stop_sandbox(deployment)
    deployment.slack.assert_no_violations()
    deployment.jira.assert_no_violations()


def new_channel() -> str:
    return "C" + secrets.token_hex(4).upper()


def texts(sandbox: SandboxDeployment, channel: str, ts: str) -> list[str]:
    return [m.get("text", "") for m in sandbox.thread(channel, ts)]


def said(sandbox: SandboxDeployment, channel: str, ts: str, part: str) -> list[str]:
    return [t for t in texts(sandbox, channel, ts) if part in t]


def created_for(sandbox: SandboxDeployment, before: int) -> list[str]:
    return sandbox.jira.created[before:]


def comments(sandbox: SandboxDeployment, key: str) -> list[str]:
    from connectors.jira.mapping import adf_text

    return [adf_text(c["body"]) for c in sandbox.jira.comments(key)]


def opened(sandbox: SandboxDeployment, channel: str, ts: str, before: int) -> str:
    [key] = wait_for(lambda: created_for(sandbox, before), timeout_s=120, what="the ticket")
    wait_for(lambda: said(sandbox, channel, ts, f"Opened {key}"), timeout_s=120, what=f"'Opened {key}' in the thread")
    return key


def test_a_reaction_opens_one_ticket_and_the_thread_and_ticket_hear_each_other(sandbox: SandboxDeployment) -> None:
    channel, before = new_channel(), len(sandbox.jira.created)
    root = sandbox.post(channel, "Checkout fails for card payments since 9:00")
    sandbox.post(channel, "All shops, also on mobile", user="U0002", thread_ts=root)
    sandbox.loop.run(sandbox.slack.add_reaction(channel, root, "ticket", user="U0003"))
    key = opened(sandbox, channel, root, before)
    # Seen at once: threadlink's eyes on the message asked about (its own reaction_added starts nothing).
    wait_for(lambda: sandbox.slack.reactions_by_threadlink(channel, root) == ["eyes"], what="threadlink's eyes")

    issue = sandbox.jira.issue(key)
    assert issue is not None and issue["fields"]["summary"] == "Checkout fails for card payments since 9:00"
    from connectors.jira.mapping import adf_text

    description = adf_text(issue["fields"]["description"])
    assert "Checkout fails for card payments since 9:00" in description and "All shops, also on mobile" in description
    # The ticket's card comes into the thread too.
    wait_for(lambda: [m for m in sandbox.cards(channel, root) if key in m.get("text", "")], what=f"the {key} card")

    sandbox.post(channel, "Restarting the payment service helped", user="U0002", thread_ts=root)
    wait_for(
        lambda: [c for c in comments(sandbox, key) if "Restarting the payment service helped" in c],
        what="the reply as a ticket comment",
    )

    sandbox.loop.run(sandbox.jira.add_agent_comment(key, "Internal: blame the PSP", public=False))
    sandbox.loop.run(sandbox.jira.add_agent_comment(key, "We rolled back the release", author="Agent Smith"))
    wait_for(
        lambda: said(sandbox, channel, root, f"Agent Smith on {key}: We rolled back the release"),
        what="the agent's public comment in the thread",
    )
    thread_texts = texts(sandbox, channel, root)
    assert not [t for t in thread_texts if "blame the PSP" in t], "an internal note reached the thread"
    # threadlink's own comment (the mirrored reply) came back as a webhook: never said in the thread.
    assert not [t for t in thread_texts if "(slack): Restarting" in t]
    # Each reply once on the ticket, each comment once in the thread.
    assert len([c for c in comments(sandbox, key) if "Restarting the payment service helped" in c]) == 1
    assert len(said(sandbox, channel, root, "We rolled back the release")) == 1


def test_concurrent_triggers_give_exactly_one_ticket(sandbox: SandboxDeployment) -> None:
    channel, before = new_channel(), len(sandbox.jira.created)
    root = sandbox.post(channel, "Printer queue stuck on floor 3")

    def trigger(n: int) -> None:
        if n % 2:
            sandbox.loop.run(sandbox.slack.add_reaction(channel, root, "ticket", user=f"U010{n}"))
        else:
            sandbox.post(channel, f"<@{sandbox.ident.bot_user_id}> ticket", user=f"U020{n}", thread_ts=root)

    workers = [threading.Thread(target=trigger, args=(n,)) for n in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    key = opened(sandbox, channel, root, before)
    # The sentinel: a reply after the triggers, awaited as a comment; any second ticket or
    # "Opened" message caused by them would be there by now.
    sandbox.post(channel, "sentinel after the triggers", thread_ts=root)
    wait_for(lambda: [c for c in comments(sandbox, key) if "sentinel after the triggers" in c], what="the sentinel")
    assert created_for(sandbox, before) == [key]
    assert len(said(sandbox, channel, root, "Opened ")) == 1


def test_a_worker_killed_in_the_middle_still_gives_one_ticket_and_every_comment_once(
    sandbox: SandboxDeployment,
) -> None:
    channel, before = new_channel(), len(sandbox.jira.created)
    root = sandbox.post(channel, "VPN drops every ten minutes")
    sandbox.loop.run(sandbox.slack.add_reaction(channel, root, "ticket"))
    replies: list[str] = []

    def reply(n: int) -> None:
        text = f"reply {n} about the VPN"
        replies.append(text)
        sandbox.post(channel, text, user="U0002", thread_ts=root)

    for n in range(3):
        reply(n)
    sandbox.children.kill_one("streams")
    for n in range(3, 6):
        reply(n)  # said while no worker runs
    sandbox.children.start("streams", "streams", "run")
    key = opened(sandbox, channel, root, before)
    for n in range(6, 8):
        reply(n)

    def every_reply_once() -> bool:
        found = comments(sandbox, key)
        return all(len([c for c in found if text in c]) >= 1 for text in replies)

    wait_for(every_reply_once, timeout_s=180, what="every reply as a comment")
    found = comments(sandbox, key)
    assert {text: len([c for c in found if text in c]) for text in replies} == dict.fromkeys(replies, 1)
    assert created_for(sandbox, before) == [key]


def test_a_refused_ticket_says_why_in_the_thread(sandbox: SandboxDeployment) -> None:
    sandbox.jira.closed_projects.add(PROJECT)
    try:
        channel = new_channel()
        root = sandbox.post(channel, "Nobody can open this one")
        sandbox.loop.run(sandbox.slack.add_reaction(channel, root, "ticket"))
        wait_for(lambda: said(sandbox, channel, root, "Could not open a ticket"), what="the refusal in the thread")
    finally:
        sandbox.jira.closed_projects.discard(PROJECT)
