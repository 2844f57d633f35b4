"""Production orders in threads, as support staff see them: a real Mosquitto, the real broker,
the connectors and streams processes, the Slack stand-in. An order number in a message gets a
card like a ticket key; the order's state changes on the shop floor update that card in place
and tell the thread; a machine that chatters is coalesced to one update.

"Nothing more happened" is never checked by sleeping: a later state is published and awaited
(a sentinel on the same order), so a late or duplicate update would have arrived before it."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.integration.kafka_helpers import wait_for
from tests.integration.sandbox_deployment import SandboxDeployment, start_sandbox, stop_sandbox
from threadlink.config import MentionPattern, Settings
from threadlink.devmqtt import Mosquitto, running_mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

MQTT_PORT = 18821
ORDER_TOPIC = "plant/{plant}/line/{line}/order/{order}/status"


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    with running_mosquitto(port=MQTT_PORT, data_dir=tmp_path_factory.mktemp("mosquitto-e2e")) as broker:
        yield broker


@pytest.fixture(scope="module")
def sandbox(
    kafka_bootstrap: str,
    namespace: str,
    mosquitto: Mosquitto,
    tmp_path_factory: pytest.TempPathFactory,
    vendor_specs: str,
) -> Iterator[SandboxDeployment]:
    group = "e2e-" + secrets.token_hex(3)  # a share group of this run's own: no earlier session's queue

    def with_shop_floor(settings: Settings) -> Settings:
        mes = {
            "type": "mqtt",
            "host": "127.0.0.1",
            "port": MQTT_PORT,
            "client_id": f"threadlink-{group}",
            "shared_group": group,
            "mappings": [
                {
                    "topic": ORDER_TOPIC,
                    "kind": "production_order",
                    "key": "{order}",
                    "fields": {"plant": "{plant}", "line": "{line}", "status": "{payload.status}"},
                }
            ],
        }
        patterns = [*settings.streams.mention_patterns, MentionPattern(system="mes", regex=r"\bPO-[0-9]{4,8}\b")]
        streams = settings.streams.model_copy(update={"mention_patterns": patterns})
        return Settings.model_validate(
            {
                **settings.model_dump(mode="python"),
                "connectors": {**settings.connectors, "mes": mes},
                "streams": streams.model_dump(),
            }
        )

    run_dir: Path = tmp_path_factory.mktemp("production-e2e")
    deployment = start_sandbox(kafka_bootstrap, f"{namespace}-prod", run_dir, customize=with_shop_floor)
    yield deployment
    stop_sandbox(deployment)
    deployment.slack.assert_no_violations()


def order_number() -> str:
    return f"PO-{secrets.randbelow(10**6):06d}"


def shop_floor(*states: tuple[str, str]) -> None:
    """Publish (order, status) messages at QoS 1, as a line's MES does."""

    async def publish() -> None:
        async with aiomqtt.Client("127.0.0.1", MQTT_PORT, identifier=f"mes-{secrets.token_hex(3)}") as client:
            for order, status in states:
                topic = ORDER_TOPIC.format(plant="hamburg", line="3", order=order)
                await client.publish(topic, json.dumps({"status": status}), qos=1)

    asyncio.run(publish())


def card_of(sandbox: SandboxDeployment, channel: str, ts: str, order: str) -> dict[str, Any] | None:
    return next((m for m in sandbox.cards(channel, ts) if m.get("blocks") and order in m.get("text", "")), None)


def shows(card: dict[str, Any] | None, text: str) -> bool:
    return card is not None and text in json.dumps(card.get("blocks"))


def updates_of(sandbox: SandboxDeployment, card_ts: str) -> list[Any]:
    return [call for call in sandbox.slack.calls("chat.update") if call.params.get("ts") == card_ts]


def channel() -> str:
    return "C" + secrets.token_hex(4).upper()


def test_an_order_number_in_a_thread_gets_the_orders_card_and_follows_its_state(sandbox: SandboxDeployment) -> None:
    order = order_number()
    shop_floor((order, "running"))
    threads = []
    for _ in range(2):
        where = channel()
        ts = sandbox.post(where, f"Customer asks whether {order} ships this week")
        card = wait_for(lambda c=where, t=ts: card_of(sandbox, c, t, order), timeout_s=90, what=f"the {order} card")
        assert shows(card, "running") and shows(card, "hamburg")
        threads.append((where, ts, card["ts"]))

    shop_floor((order, "delayed"))
    for where, ts, card_ts in threads:
        wait_for(lambda c=where, t=ts: shows(card_of(sandbox, c, t, order), "delayed"), what="the delayed card")
        assert card_of(sandbox, where, ts, order)["ts"] == card_ts  # updated in place, not a new card
        replies = wait_for(
            lambda c=where, t=ts: [m for m in sandbox.thread(c, t) if "running → delayed" in m.get("text", "")],
            what="the status reply in the thread",
        )
        assert len(replies) == 1

    # The sentinel: a later state, awaited. Had the first change been carried out twice, it would show.
    shop_floor((order, "done"))
    for where, ts, card_ts in threads:
        wait_for(lambda c=where, t=ts: shows(card_of(sandbox, c, t, order), "done"), what="the done card")
        assert len(updates_of(sandbox, card_ts)) == 2


def test_a_chattering_machine_is_one_update_of_the_card(sandbox: SandboxDeployment) -> None:
    order = order_number()
    shop_floor((order, "running"))
    where = channel()
    ts = sandbox.post(where, f"{order} keeps flapping")
    card_ts = wait_for(lambda: card_of(sandbox, where, ts, order), timeout_s=90, what=f"the {order} card")["ts"]

    shop_floor(*[(order, "blocked" if n % 2 == 0 else "running") for n in range(20)], (order, "blocked"))
    wait_for(lambda: shows(card_of(sandbox, where, ts, order), "blocked"), what="the last state on the card")
    shop_floor((order, "done"))  # the sentinel, after the window
    wait_for(lambda: shows(card_of(sandbox, where, ts, order), "done"), what="the sentinel update")
    assert len(updates_of(sandbox, card_ts)) == 2, "21 changes within the window are one update, then the sentinel"


def test_an_order_mentioned_before_the_shop_floor_reported_it_gets_its_card_when_it_does(
    sandbox: SandboxDeployment,
) -> None:
    """The MES has no look-up: the mention waits for the order's first state, and other
    mentions go on meanwhile."""
    order = order_number()
    where = channel()
    ts = sandbox.post(where, f"What about {order}?")
    other, known = order_number(), channel()
    shop_floor((other, "running"))
    other_ts = sandbox.post(known, f"And {other}?")
    wait_for(lambda: card_of(sandbox, known, other_ts, other), timeout_s=90, what="the card of the known order")
    assert card_of(sandbox, where, ts, order) is None

    shop_floor((order, "queued"))
    card = wait_for(lambda: card_of(sandbox, where, ts, order), what="the card once the order is reported")
    assert shows(card, "queued")
