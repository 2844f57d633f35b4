"""Matrix end to end, exactly like Slack's: a real Synapse (its application service registration
made by `threadlink matrix registration`), the real broker, `threadlink connectors run` and
`threadlink streams run` as real processes, and the Jira stand-in as the record system.

A real Synapse user names a Jira key in a room; threadlink's card arrives in that message's
thread from the Matrix sink; the ticket changes and the card is edited in place (`m.replace`),
with a short notice in the thread; the ticket gets a back-link that does not name the private room. And
threadlink's user accepts invitations (through a JoinRoom command its own sink carries out) and no
one else's. The tests share one deployment: each Synapse start is slow, and the session's homeserver
is shared."""

from __future__ import annotations

import json
import secrets
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.contracts.matrix import matrix_contract
from schemas.commands import Command, JoinRoom
from tests.integration.kafka_helpers import envelopes, wait_for
from tests.integration.sandbox_deployment import SandboxDeployment, start_sandbox, stop_sandbox

from .synapse_server import Synapse

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

#: Where the session's Synapse sends the application service's transactions (its registration).
WEBHOOK_PORT = 19109


@pytest.fixture(scope="module")
def deployment(
    synapse: Synapse, kafka_bootstrap: str, namespace: str, tmp_path_factory: pytest.TempPathFactory, vendor_specs: str
) -> Iterator[SandboxDeployment]:
    appservice = synapse.appservice
    assert appservice is not None
    matrix = {
        "type": "matrix",
        "homeserver_url": synapse.url,
        "server_name": "localhost",
        "url": appservice.url,
        "as_token": appservice.as_token,
        "hs_token": appservice.hs_token,
    }
    run_dir: Path = tmp_path_factory.mktemp("matrix-e2e")
    started = start_sandbox(
        kafka_bootstrap, f"{namespace}-mxe2e", run_dir, port=WEBHOOK_PORT, connectors={"matrix": matrix}
    )
    yield started
    stop_sandbox(started)
    started.jira.assert_no_violations()


def _messages(synapse: Synapse, token: str, room: str) -> list[dict[str, Any]]:
    """The room's newest events, oldest first, as its member sees them."""
    path = f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/messages?dir=b&limit=100"
    chunk = synapse.client("GET", path, token).get("chunk", [])
    return list(reversed(chunk))


def test_a_matrix_thread_naming_a_jira_key_gets_its_card_and_the_card_follows_the_ticket(
    deployment: SandboxDeployment, synapse: Synapse
) -> None:
    assert synapse.appservice is not None
    bot = f"@{synapse.appservice.sender_localpart}:localhost"
    key = f"MXE-{secrets.randbelow(9000) + 1000}"
    deployment.loop.run(deployment.jira.put_issue(key, "Checkout fails", status="To Do", assignee="Ada Lovelace"))

    alice = synapse.register_user(f"alice-e2e-{secrets.token_hex(3)}")
    token = alice["access_token"]
    # An invite-only room (restricted): a Jira ticket is internal, so a public room would get no card.
    room = synapse.client("POST", "/_matrix/client/v3/createRoom", token, {"preset": "private_chat"})["room_id"]
    quoted = urllib.parse.quote(room)
    synapse.client("POST", f"/_matrix/client/v3/rooms/{quoted}/invite", token, {"user_id": bot})
    synapse.client("POST", f"/_matrix/client/v3/join/{quoted}", synapse.appservice.as_token, {})
    message = {"msgtype": "m.text", "body": f"Customers can't pay at checkout again. Is this {key}?"}
    root = synapse.client("PUT", f"/_matrix/client/v3/rooms/{quoted}/send/m.room.message/e2e-1", token, message)[
        "event_id"
    ]

    def cards() -> list[dict[str, Any]]:
        return [
            e
            for e in _messages(synapse, token, room)
            if e["sender"] == bot
            and e["type"] == "m.room.message"
            and (e["content"].get("m.relates_to") or {}).get("rel_type") == "m.thread"
            and key in e["content"].get("body", "")
            and "(To Do)" in e["content"].get("body", "")
        ]

    (card,) = wait_for(cards, timeout_s=120, what=f"the {key} card in the Matrix thread")
    content = card["content"]
    assert content["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": False,
        "m.in_reply_to": {"event_id": root},
    }
    assert content["msgtype"] == "m.notice" and content["format"] == "org.matrix.custom.html"
    assert f"<b>{key}</b></a> Checkout fails" in content["formatted_body"]
    assert matrix_contract().event_errors(card, complete=True) == []

    # The ticket changes: the card is edited in place, and the thread hears of the new status.
    deployment.loop.run(deployment.jira.put_issue(key, "Checkout fails", status="In Progress", assignee="Ada Lovelace"))

    def edits() -> list[dict[str, Any]]:
        return [
            e
            for e in _messages(synapse, token, room)
            if e["sender"] == bot
            and (e["content"].get("m.relates_to") or {}).get("rel_type") == "m.replace"
            and "(In Progress)" in e["content"].get("m.new_content", {}).get("body", "")
        ]

    (edit,) = wait_for(edits, timeout_s=90, what="the card's edit (m.replace)")
    assert edit["content"]["m.relates_to"] == {"rel_type": "m.replace", "event_id": card["event_id"]}
    assert edit["content"]["body"].startswith(f"* {key}")
    assert matrix_contract().event_errors(edit, complete=True) == []
    notices = wait_for(
        lambda: [
            e
            for e in _messages(synapse, token, room)
            if e["sender"] == bot
            and "To Do → In Progress" in e["content"].get("body", "")
            and (e["content"].get("m.relates_to") or {}).get("event_id") == root
        ],
        timeout_s=60,
        what="the status notice in the thread",
    )
    assert len(notices) == 1
    assert len(cards()) == 1  # one card, edited; never posted twice

    # The ticket gets its back-link; the room is narrower than the ticket's audience, so the link
    # to the thread is left out (as for a private Slack channel).
    comments = wait_for(lambda: deployment.jira.comments(key), what=f"the back-link comment on {key}")
    body = json.dumps(comments[0]["body"])
    assert "Mentioned in a private matrix conversation" in body
    assert "matrix.to" not in body and urllib.parse.quote(room, safe="") not in body


def test_an_invitation_of_threadlinks_user_is_accepted_and_someone_elses_is_not_acted_on(
    deployment: SandboxDeployment, synapse: Synapse, kafka_bootstrap: str
) -> None:
    assert synapse.appservice is not None
    bot = f"@{synapse.appservice.sender_localpart}:localhost"
    alice = synapse.register_user(f"alice-inv-{secrets.token_hex(3)}")
    bob = synapse.register_user(f"bob-inv-{secrets.token_hex(3)}")
    token = alice["access_token"]
    room = synapse.client("POST", "/_matrix/client/v3/createRoom", token, {"preset": "private_chat"})["room_id"]
    quoted = urllib.parse.quote(room)
    # Bob first: the homeserver sends transactions in order, so once threadlink has joined, the
    # source has seen Bob's invitation too.
    synapse.client("POST", f"/_matrix/client/v3/rooms/{quoted}/invite", token, {"user_id": bob["user_id"]})
    synapse.client("POST", f"/_matrix/client/v3/rooms/{quoted}/invite", token, {"user_id": bot})

    def joined() -> set[str]:
        answer = synapse.client("GET", f"/_matrix/client/v3/rooms/{quoted}/joined_members", token)
        return set(answer.get("joined", {}))

    members = wait_for(lambda: bot in joined() and joined(), timeout_s=90, what="threadlink's user in the room")
    assert bob["user_id"] not in members  # still only invited

    topic = deployment.settings.kafka.topics.commands("matrix")
    joins = [
        e.data
        for e in envelopes(kafka_bootstrap, topic, Command)
        if isinstance(e.data, JoinRoom) and e.data.destination.channel == room
    ]
    assert len(joins) == 1  # one for threadlink's invitation, none for Bob's
    membership = synapse.client("GET", f"/_matrix/client/v3/rooms/{quoted}/state/m.room.member/{bot}", token)
    assert membership["membership"] == "join"
