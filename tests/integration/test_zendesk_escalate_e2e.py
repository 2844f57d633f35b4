"""Escalate into Zendesk as support staff see it: the real broker, the real `connectors run` and
`streams run` processes, the Slack stand-in and FakeZendesk (Zendesk's documented formats, see
sandbox/zendesk_api.py). A reaction opens one Zendesk ticket; a reply in the thread becomes an
internal note on it; an agent's public reply comes back into the thread, attributed; the agent's
internal note, and threadlink's own comment coming back as a webhook, never do."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.demo import free_port
from sandbox.zendesk_api import FakeZendesk
from tests.integration.kafka_helpers import wait_for
from tests.integration.sandbox_deployment import LoopThread, SandboxDeployment, start_sandbox, stop_sandbox

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

EMAIL = "threadlink@example.com"


@pytest.fixture(scope="module")
def zendesk_sandbox(
    kafka_bootstrap: str, namespace: str, tmp_path_factory: pytest.TempPathFactory, vendor_specs: str
) -> Iterator[tuple[SandboxDeployment, FakeZendesk]]:
    run_dir: Path = tmp_path_factory.mktemp("zendesk-escalate")
    loop, port = LoopThread(), free_port(18797)
    token, secret = secrets.token_hex(12), secrets.token_hex(16)
    zendesk = FakeZendesk(
        email=EMAIL, api_token=token, webhook_secret=secret, webhook_url=f"http://127.0.0.1:{port}/webhooks/zendesk"
    )
    loop.run(zendesk.start())
    entry = {"type": "zendesk", "base_url": zendesk.url, "email": EMAIL, "api_token": token, "webhook_secret": secret}
    deployment = start_sandbox(
        kafka_bootstrap,
        f"{namespace}-zd-escalate",
        run_dir,
        escalate={"target": "zendesk", "project": "billing"},
        loop=loop,
        port=port,
        connectors={"zendesk": entry},
    )
    try:
        yield deployment, zendesk
    finally:
        deployment.children.stop()
        loop.run(zendesk.stop())
        stop_sandbox(deployment)
    deployment.slack.assert_no_violations()
    zendesk.assert_no_violations()


def texts(sandbox: SandboxDeployment, channel: str, ts: str) -> list[str]:
    return [m.get("text", "") for m in sandbox.thread(channel, ts)]


def said(sandbox: SandboxDeployment, channel: str, ts: str, part: str) -> list[str]:
    return [t for t in texts(sandbox, channel, ts) if part in t]


def test_a_reaction_opens_a_zendesk_ticket_and_internal_notes_never_reach_the_thread(
    zendesk_sandbox: tuple[SandboxDeployment, FakeZendesk],
) -> None:
    sandbox, zendesk = zendesk_sandbox
    channel = "C" + secrets.token_hex(4).upper()
    root = sandbox.post(channel, "Refunds are stuck since the release")
    sandbox.loop.run(sandbox.slack.add_reaction(channel, root, "ticket", user="U0003"))
    [ticket_id] = wait_for(lambda: list(zendesk.created), timeout_s=120, what="the Zendesk ticket")
    wait_for(lambda: said(sandbox, channel, root, f"Opened {ticket_id}"), timeout_s=120, what="'Opened' in the thread")
    ticket = zendesk.tickets[ticket_id].fields
    assert ticket["subject"] == "Refunds are stuck since the release"
    assert ticket["external_id"].startswith("threadlink-") and "billing" in ticket["tags"]

    sandbox.post(channel, "It is the PSP's new API", user="U0002", thread_ts=root)
    wait_for(
        lambda: [c for c in zendesk.comments(ticket_id) if "It is the PSP's new API" in c["body"]],
        timeout_s=120,
        what="the reply as a ticket comment",
    )
    mirrored = next(c for c in zendesk.comments(ticket_id) if "It is the PSP's new API" in c["body"])
    assert mirrored["public"] is False  # threadlink's comments are internal notes by default

    # The ticket's card in the thread: from now on the thread hears the ticket's comments.
    wait_for(lambda: said(sandbox, channel, root, f"{ticket_id}: Refunds are stuck"), timeout_s=120, what="the card")
    wait_for(
        lambda: [c for c in zendesk.comments(ticket_id) if c["body"].startswith("Mentioned in a slack thread")],
        timeout_s=120,
        what="the thread's back-link on the ticket",
    )

    sandbox.loop.run(zendesk.add_comment(ticket_id, "Internal: the PSP owes us a fix", public=False))
    sandbox.loop.run(zendesk.add_comment(ticket_id, "We rolled back the release", public=True, author_id=361_000_042))
    wait_for(
        lambda: said(sandbox, channel, root, f"Agent 42 on {ticket_id}: We rolled back the release"),
        timeout_s=120,
        what="the agent's public reply in the thread",
    )
    thread_texts = texts(sandbox, channel, root)
    assert not [t for t in thread_texts if "owes us a fix" in t], "an internal note reached the thread"
    # threadlink's own comment came back as a webhook (by its own user): never said in the thread.
    assert len([t for t in thread_texts if "It is the PSP's new API" in t]) == 1
    assert len(said(sandbox, channel, root, "We rolled back the release")) == 1
