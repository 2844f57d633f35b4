"""The GitHub connector on the real broker, against FakeGitHub (GitHub's wire format, auth and
OpenAPI description checked on every request, answer and webhook): a signed webhook through the
runtime's HTTP layer becomes a record on the records topic (once, also when redelivered); a
FetchRecord command through the sink runtime gives the record and an outcome; a CreateTicket
asked for twice opens one issue."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sandbox.contracts import SpecsMissing
from sandbox.contracts.github import github_contract
from sandbox.github_api import FakeGitHub
from schemas import events
from schemas.commands import Command, CreateTicket, FetchRecord, command_id_for
from schemas.envelope import Envelope
from schemas.outcomes import Outcome
from schemas.records import RecordEvent, RecordRef, TicketRecord
from schemas.social import ThreadRef
from tests.integration.connector_deployment import Deployment, as_fields, deploy
from tests.integration.kafka_helpers import envelopes, wait_for

pytestmark = pytest.mark.integration

TOKEN = "github_pat_integration_not_real_0123456789"
SECRET = "github-integration-webhook-secret"
NAME = "github"
THREAD = ThreadRef(platform="slack", workspace="T01", channel="C01", thread_id="1700000000.000100")


@dataclass
class Deployed(Deployment):
    fake: FakeGitHub

    def records(self) -> list[Envelope[Any]]:
        return envelopes(self.bootstrap, self.topics.records, RecordEvent)

    def outcomes(self) -> list[Envelope[Outcome]]:
        return envelopes(self.bootstrap, self.topics.outcomes, Outcome)


@pytest.fixture
async def deployed(kafka_bootstrap: str, namespace: str, request: pytest.FixtureRequest) -> AsyncIterator[Deployed]:
    """FakeGitHub, and the connector deployed against it (tests/integration/connector_deployment.py)."""
    try:
        contract = github_contract()
    except SpecsMissing as exc:
        pytest.skip(f"GitHub's OpenAPI description is needed to check the traffic: {exc}")
    fake = FakeGitHub(token=TOKEN, webhook_secret=SECRET, contract=contract)
    await fake.start()
    fake.add_repo("acme/shop", private=True)
    entry = {"type": "github", "api_url": fake.url, "token": TOKEN, "webhook_secret": SECRET}
    try:
        async with deploy(
            NAME, entry, bootstrap=kafka_bootstrap, namespace=namespace, test_name=request.node.name
        ) as deployment:
            yield Deployed(**as_fields(deployment), fake=fake)
        fake.assert_no_violations()
    finally:
        await fake.stop()


async def run_sink_until(deployed: Deployed, done: Any, timeout_s: float = 60) -> None:
    async with deployed.sink_running():
        async with asyncio.timeout(timeout_s):
            while not await asyncio.to_thread(done):
                await asyncio.sleep(0.2)


def command_envelope(command: Command) -> Envelope[Command]:
    return Envelope.wrap(command, type=events.COMMAND.format(kind=command.kind), source_system="streams")


async def test_a_signed_issues_webhook_becomes_one_record_on_the_records_topic(deployed: Deployed) -> None:
    fake = deployed.fake
    fake.webhook_url = deployed.webhook_url
    issue = await fake.put_issue("acme/shop", "Checkout is down", assignee="ada", labels=["bug"])
    opened = fake.deliveries[-1]
    assert (opened.event, opened.action, opened.status) == ("issues", "opened", 200)

    records = wait_for(deployed.records, timeout_s=30, what="the issue's record on Kafka")
    (envelope,) = records
    record = envelope.data
    assert isinstance(record, TicketRecord)
    assert (record.ref.id, record.title, record.assignee, record.visibility) == (
        "github:acme/shop#1",
        "Checkout is down",
        "ada",
        "internal",
    )
    assert envelope.id == f"{NAME}:{opened.delivery}"

    # GitHub's redelivery (same X-GitHub-Delivery) is answered 2xx and publishes nothing new.
    redelivered = await fake.deliver(
        "issues", fake.issue_event("opened", "acme/shop", issue["number"]), delivery=opened.delivery
    )
    assert redelivered.status == 200
    await fake.put_issue("acme/shop", "Checkout is down", state="closed", number=issue["number"])  # a new delivery
    statuses = wait_for(lambda: [getattr(e.data, "status", None) for e in deployed.records()][1:] or None, timeout_s=30)
    assert statuses == ["closed"]


async def test_a_webhook_with_a_bad_signature_is_401_and_ping_is_200(deployed: Deployed) -> None:
    fake = deployed.fake
    await fake.put_issue("acme/shop", "Checkout is down")
    body, headers = fake.signed("issues", fake.issue_event("opened", "acme/shop", 1))
    async with httpx.AsyncClient(timeout=30) as client:
        forged = await client.post(
            deployed.webhook_url, content=body, headers={**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}
        )
        ping_body = b'{"zen":"Design for failure.","hook_id":1}'
        ping = await client.post(
            deployed.webhook_url,
            content=ping_body,
            headers={"X-GitHub-Event": "ping", "X-GitHub-Delivery": "p-1", "X-Hub-Signature-256": _sign(ping_body)},
        )
        broken = await client.post(
            deployed.webhook_url,
            content=b'{"action":"opened"}',
            headers={
                "X-GitHub-Event": "issues",
                "X-GitHub-Delivery": "b-1",
                "X-Hub-Signature-256": _sign(b'{"action":"opened"}'),
            },
        )
    assert (forged.status_code, ping.status_code, broken.status_code) == (401, 200, 400)
    assert deployed.records() == []


def _sign(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


async def test_fetch_record_command_publishes_the_record_and_a_done_outcome(deployed: Deployed) -> None:
    await deployed.fake.put_issue("acme/shop", "Flaky checkout test", labels=["ci"])
    found = FetchRecord(
        command_id=command_id_for("fetch_record", "acme/shop#1"),
        target=NAME,
        record=RecordRef(system=NAME, key="acme/shop#1"),
    )
    missing = FetchRecord(
        command_id=command_id_for("fetch_record", "acme/shop#9"),
        target=NAME,
        record=RecordRef(system=NAME, key="acme/shop#9"),
    )
    for command in (found, missing):
        await deployed.publisher.publish(deployed.topics.commands(NAME), command.record.id, command_envelope(command))

    await run_sink_until(deployed, lambda: len(deployed.outcomes()) >= 2)

    by_id = {o.data.command_id: o.data for o in deployed.outcomes()}
    assert by_id[found.command_id].status == "done" and by_id[found.command_id].effect.found is True  # type: ignore[union-attr]
    assert by_id[missing.command_id].status == "done" and by_id[missing.command_id].effect.found is False  # type: ignore[union-attr]
    kinds = {e.data.ref.key: e.data.kind for e in deployed.records()}
    assert kinds == {"acme/shop#1": "ticket", "acme/shop#9": "missing"}
    gets = [r for r in deployed.fake.requests if r.method == "GET"]
    # Commands of different records run concurrently: in either order.
    assert sorted(r.path for r in gets) == ["/repos/acme/shop/issues/1", "/repos/acme/shop/issues/9"]
    assert all(r.headers.get("X-GitHub-Api-Version") == "2022-11-28" and r.authenticated for r in gets)


async def test_create_ticket_asked_for_twice_opens_one_issue(deployed: Deployed) -> None:
    def create(salt: str) -> CreateTicket:
        return CreateTicket(
            command_id=command_id_for("create_ticket", THREAD.id, salt),
            target=NAME,
            thread=THREAD,
            project="acme/shop",
            summary="Checkout fails at payment",
            description="Ada (slack): checkout fails",
        )

    first, second = create("ada"), create("grace")  # two people asked, a moment apart
    for command in (first, first, second):  # and the first request was delivered twice
        await deployed.publisher.publish(deployed.topics.commands(NAME), THREAD.id, command_envelope(command))

    await run_sink_until(
        deployed, lambda: {o.data.command_id for o in deployed.outcomes()} >= {first.command_id, second.command_id}
    )

    assert deployed.fake.created == ["acme/shop#1"]
    effects = {o.data.command_id: o.data.effect for o in deployed.outcomes() if o.data.status == "done"}
    assert (
        effects[first.command_id].created
        == effects[second.command_id].created
        == RecordRef(system=NAME, key="acme/shop#1")
    )  # type: ignore[union-attr]
    assert effects[second.command_id].recovered  # type: ignore[union-attr]
