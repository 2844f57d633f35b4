"""Reach as support staff see it: real broker, real connectors and streams processes, the Slack
and Jira stand-ins. A thread that matches a routing rule is announced in the leads' channel once;
a thread nobody answers reaches the leads after its SLA step and says so in the thread, and
opens a ticket at the next step; a thread someone answers in time reaches nobody."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.kafka_helpers import wait_for
from tests.integration.sandbox_deployment import SandboxDeployment, start_sandbox, stop_sandbox

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

TEAM = "T0SANDBOX"
LEADS, ALL_HANDS, WATCHED = "C0LEADS00", "C0ALLHANDS", "C0WATCHED"
STEP_S = 4.0
ON_CALL = "U0ONCALL01"


@pytest.fixture(scope="module")
def sandbox(
    kafka_bootstrap: str, namespace: str, tmp_path_factory: pytest.TempPathFactory, vendor_specs: str
) -> Iterator[SandboxDeployment]:
    run_dir: Path = tmp_path_factory.mktemp("reach")
    leads = {"platform": "slack", "workspace": TEAM, "channel": LEADS, "visibility": "internal"}
    all_hands = {"platform": "slack", "workspace": TEAM, "channel": ALL_HANDS, "visibility": "internal"}
    deployment = start_sandbox(
        kafka_bootstrap,
        f"{namespace}-reach",
        run_dir,
        escalate={"target": "jira", "project": "SUP"},
        reach={
            "rules": [
                {
                    "name": "outage",
                    "match": {"keywords": ["outage"]},
                    "notify": [leads],
                    "subscribe": [{"platform": "slack", "workspace": TEAM, "user_id": ON_CALL}],
                },
                {"name": "billing", "match": {"record_kinds": ["ticket"], "labels": ["billing"]}, "notify": [leads]},
            ],
            "first_answer": [
                {
                    "name": "gold",
                    "match": {"channels": [WATCHED]},
                    "steps": [
                        {"after_s": STEP_S, "notify": [leads]},
                        {"after_s": 2 * STEP_S, "notify": [all_hands], "escalate": True},
                    ],
                }
            ],
            "check_interval_s": 0.5,
        },
    )
    for channel in (LEADS, ALL_HANDS, WATCHED):
        deployment.slack.add_channel(channel)
    yield deployment
    stop_sandbox(deployment)
    deployment.slack.assert_no_violations()
    deployment.jira.assert_no_violations()


def in_channel(sandbox: SandboxDeployment, channel: str, part: str) -> list[str]:
    async def read() -> list[str]:
        return [m.get("text", "") for m in sandbox.slack.channel_messages(channel) if part in m.get("text", "")]

    return sandbox.loop.run(read())


def bot_replies(sandbox: SandboxDeployment, channel: str, ts: str) -> list[str]:
    return [m.get("text", "") for m in sandbox.cards(channel, ts)]


def test_a_thread_matching_a_rule_is_announced_to_the_leads_once(sandbox: SandboxDeployment) -> None:
    channel = "C" + secrets.token_hex(4).upper()
    marker = secrets.token_hex(3)
    ts = sandbox.post(channel, f"Is there an outage of payments? ({marker})")
    wait_for(lambda: in_channel(sandbox, LEADS, marker), timeout_s=90, what="the leads to hear of the outage")
    # A second matching message in the same thread, and a sentinel thread after it.
    sandbox.post(channel, f"still an outage ({marker})", thread_ts=ts)
    sentinel = secrets.token_hex(3)
    sandbox.post(channel, f"another outage ({sentinel})")
    wait_for(lambda: in_channel(sandbox, LEADS, sentinel), timeout_s=90, what="the sentinel's notice")
    notices = in_channel(sandbox, LEADS, marker)
    assert len(notices) == 1, notices
    assert f"A thread in #{channel} matches 'outage'" in notices[0]
    # The rule's `subscribe`: the on-call person is brought into the thread, once.
    brought = wait_for(
        lambda: [text for text in bot_replies(sandbox, channel, ts) if f"<@{ON_CALL}>" in text],
        timeout_s=60,
        what="the on-call person brought into the thread",
    )
    assert len(brought) == 1 and "matches 'outage'" in brought[0], bot_replies(sandbox, channel, ts)


def test_a_thread_nobody_answers_reaches_the_leads_then_all_hands_and_a_ticket(sandbox: SandboxDeployment) -> None:
    marker = secrets.token_hex(3)
    created_before = len(sandbox.jira.created)
    ts = sandbox.post(WATCHED, f"Printing labels fails on line 3 ({marker})", user="U0ADA")
    sandbox.post(WATCHED, "it started after the update", user="U0ADA", thread_ts=ts)  # the author: no answer
    wait_for(lambda: in_channel(sandbox, LEADS, marker), timeout_s=90, what="the first step's notice")
    assert "has waited 4 s for an answer" in in_channel(sandbox, LEADS, marker)[0]
    wait_for(
        lambda: any("No answer yet after 4 s: I asked #C0LEADS00." in t for t in bot_replies(sandbox, WATCHED, ts)),
        timeout_s=60,
        what="the thread to hear who was asked",
    )
    wait_for(lambda: in_channel(sandbox, ALL_HANDS, marker), timeout_s=90, what="the second step's notice")
    wait_for(lambda: len(sandbox.jira.created) > created_before, timeout_s=90, what="the ticket of the last step")
    assert len(in_channel(sandbox, LEADS, marker)) == 1, "each step is taken once"


def test_a_thread_answered_in_time_reaches_nobody(sandbox: SandboxDeployment) -> None:
    marker = secrets.token_hex(3)
    ts = sandbox.post(WATCHED, f"How do I reprint a label? ({marker})", user="U0ADA")
    sandbox.post(WATCHED, "Use the reprint button on the station", user="U0GRACE", thread_ts=ts)
    # A later unanswered thread reaches the leads; by then this one's step time is long past.
    sentinel = secrets.token_hex(3)
    sandbox.post(WATCHED, f"Scanner offline ({sentinel})", user="U0ADA")
    wait_for(lambda: in_channel(sandbox, LEADS, sentinel), timeout_s=90, what="the sentinel's notice")
    assert in_channel(sandbox, LEADS, marker) == []
    assert not any("No answer yet" in t for t in bot_replies(sandbox, WATCHED, ts))


def test_someone_subscribed_to_a_project_is_mentioned_in_a_new_thread_about_it(sandbox: SandboxDeployment) -> None:
    channel = "C" + secrets.token_hex(4).upper()
    bot = sandbox.ident.bot_user_id
    ts = sandbox.post(channel, f"<@{bot}> subscribe project SUB", user="U0GRACE")
    wait_for(
        lambda: any("you will hear of threads about project SUB" in t for t in bot_replies(sandbox, channel, ts)),
        timeout_s=90,
        what="the subscription's confirmation",
    )

    def mentioned_in_a_new_thread() -> bool:
        # The workers read subscriptions as they come: a new thread until one has it (bounded).
        other = "C" + secrets.token_hex(4).upper()
        root = sandbox.post(other, "Is SUB-42 fixed yet?", user="U0ADA")
        try:
            wait_for(
                lambda: any("<@U0GRACE>" in t for t in bot_replies(sandbox, other, root)),
                timeout_s=8,
                what="the subscriber's mention",
            )
        except AssertionError:
            return False
        return True

    wait_for(
        mentioned_in_a_new_thread, timeout_s=120, interval_s=0, what="a thread about SUB to mention its subscriber"
    )


def test_a_thread_naming_a_ticket_labelled_billing_is_announced_by_the_rule_on_labels(
    sandbox: SandboxDeployment,
) -> None:
    tag = secrets.token_hex(2).upper()
    billing, other, sentinel = f"BIL{tag}-1", f"BIL{tag}-2", f"BIL{tag}-3"
    sandbox.loop.run(sandbox.jira.put_issue(billing, "Refunds are paid twice", labels=["billing", "p1"]))
    sandbox.loop.run(sandbox.jira.put_issue(other, "Logo is blurry", labels=["frontend"]))
    sandbox.loop.run(sandbox.jira.put_issue(sentinel, "Invoices are late", labels=["Billing"]))
    quiet, told = "C" + secrets.token_hex(4).upper(), "C" + secrets.token_hex(4).upper()
    sandbox.post(quiet, f"Is {other} the same thing?")
    sandbox.post(told, f"Customers complain, see {billing}")
    wait_for(lambda: in_channel(sandbox, LEADS, f"it names {billing}"), timeout_s=90, what="the notice of the rule")
    [notice] = in_channel(sandbox, LEADS, f"it names {billing}")
    assert f"#{told} matches 'billing'" in notice
    # The sentinel, after the quiet thread: had that one matched, its notice would be there by now.
    last = "C" + secrets.token_hex(4).upper()
    sandbox.post(last, f"And {sentinel}?")
    wait_for(lambda: in_channel(sandbox, LEADS, f"it names {sentinel}"), timeout_s=90, what="the sentinel's notice")
    assert in_channel(sandbox, LEADS, f"#{quiet}") == []
