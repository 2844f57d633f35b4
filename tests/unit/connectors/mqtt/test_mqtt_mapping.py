"""Topics and payloads to records by configuration: captures, payload paths (Sparkplug-style
metric lists too), types, and a clear reason for everything that cannot be a record."""

import re
from datetime import UTC, datetime

import pytest

from connectors.mqtt.config import MqttMapping
from connectors.mqtt.mapping import MappingFailed, TopicPattern, record_from_message
from schemas.records import MachineStateRecord, ProductionOrderRecord

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 3, 7, 0, tzinfo=UTC)

ORDERS = MqttMapping.model_validate(
    {
        "topic": "plant/{plant}/line/{line}/order/{order}/status",
        "kind": "production_order",
        "key": "{order}",
        "url": "https://mes.example/orders/{order}",
        "fields": {
            "plant": "{plant}",
            "line": "{line}",
            "status": "{payload.status}",
            "product": "{payload.product?}",
            "quantity": "{payload.done}/{payload.total} pcs",
            "due_at": "{payload.due?}",
            "updated_at": "{payload.ts}",
        },
    }
)
SPARKPLUG = MqttMapping.model_validate(
    {
        "topic": "spBv1.0/{group}/DDATA/{node}/{device}",
        "kind": "machine_state",
        "key": "{node}-{device}",
        "title": "{device} on {node}",
        "fields": {
            "machine": "{device}",
            "state": "{payload.metrics[name=State].value}",
            "reason": "{payload.metrics[name=Reason].value?}",
            "order": "{payload.metrics[name=Order].value?}",
            "updated_at": "{payload.timestamp}",
            "version": "{payload.seq}",
        },
    }
)
PLAIN = MqttMapping.model_validate(
    {
        "topic": "plant/{plant}/machine/{machine}/state",
        "kind": "machine_state",
        "key": "{machine}",
        "fields": {"state": "{payload}", "plant": "{plant}"},
    }
)


def order(payload: bytes, topic: str = "plant/p1/line/l3/order/PO-4711/status") -> ProductionOrderRecord:
    record = record_from_message(ORDERS, system="mes", topic=topic, payload=payload, received_at=NOW)
    assert isinstance(record, ProductionOrderRecord)
    return record


def test_topic_captures_and_payload_fields_make_a_production_order() -> None:
    record = order(b'{"status": "delayed", "done": 480, "total": 500, "ts": "2026-12-03T06:59:00Z"}')
    assert record.ref.id == "mes:PO-4711"
    assert (record.plant, record.line, record.status, record.quantity) == ("p1", "l3", "delayed", "480/500 pcs")
    assert record.product is None  # optional and missing: left unset
    assert record.title == "Order PO-4711" and record.url == "https://mes.example/orders/PO-4711"
    assert record.updated_at == datetime(2026, 12, 3, 6, 59, tzinfo=UTC)
    assert record.version == int(record.updated_at.timestamp() * 1000)
    assert record.field_value("line") == "p1/l3"


def test_sparkplug_style_metrics_are_found_by_name_in_any_order() -> None:
    payload = (
        b'{"timestamp": 1764745200000, "seq": 42, "metrics": ['
        b'{"name": "Reason", "value": "jam"}, {"name": "State", "value": "down"}]}'
    )
    record = record_from_message(
        SPARKPLUG, system="mes", topic="spBv1.0/press/DDATA/edge-1/press-7", payload=payload, received_at=NOW
    )
    assert isinstance(record, MachineStateRecord)
    assert (record.ref.key, record.title, record.machine) == ("edge-1-press-7", "press-7 on edge-1", "press-7")
    assert (record.state, record.reason, record.order, record.version) == ("down", "jam", None, 42)
    assert record.updated_at == datetime.fromtimestamp(1764745200, UTC)  # epoch milliseconds


def test_a_plain_text_payload_is_a_state_and_arrival_time_is_the_version() -> None:
    record = record_from_message(
        PLAIN, system="mes", topic="plant/p1/machine/m9/state", payload=b"running\n", received_at=NOW
    )
    assert isinstance(record, MachineStateRecord)
    assert (record.state, record.plant, record.updated_at) == ("running", "p1", NOW)


def test_a_topic_of_another_pattern_is_not_this_mappings() -> None:
    assert (
        record_from_message(ORDERS, system="mes", topic="plant/p1/line/l3/order/PO-1", payload=b"{}", received_at=NOW)
        is None
    )
    pattern = TopicPattern.parse("plant/{plant}/#")
    assert pattern.match("plant/p1/a/b") == {"plant": "p1"} and pattern.match("other/p1") is None
    assert pattern.subscription == "plant/+/#"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"status": "late", "done": 1, "total"', "payload on plant/p1/line/l3/order/PO-4711/status is not JSON"),
        (b"[1, 2]", "fields.status: the payload has no payload.status"),
        (b'"just text"', "is str, not a JSON object"),
        (b'{"done": 1, "total": 2, "ts": 1}', "fields.status: the payload has no payload.status"),
        (b'{"status": {"code": 3}, "done": 1, "total": 2, "ts": 1}', "fields.status: got an object, expected a text"),
        (b'{"status": "ok", "done": [1], "total": 2, "ts": 1}', "fields.quantity: {payload.done} is a list"),
        (b'{"status": "ok", "done": 1, "total": 2, "ts": "yesterday"}', "fields.updated_at: 'yesterday' is not an ISO"),
        (b'{"status": "ok", "done": 1, "total": 2, "ts": 1e300}', "fields.updated_at is out of range for a time"),
        (b'{"status": "ok", "done": 1, "total": 2, "ts": true}', "fields.updated_at: got a boolean"),
        (b'{"status": NaN}', "is not JSON"),
    ],
)
def test_what_cannot_be_a_record_says_why(payload: bytes, reason: str) -> None:
    with pytest.raises(MappingFailed) as info:
        order(payload)
    assert reason in str(info.value)


def test_a_bad_version_is_refused_and_a_long_key_kept_whole() -> None:
    payload = b'{"timestamp": 1, "seq": -3, "metrics": [{"name": "State", "value": "down"}]}'
    with pytest.raises(MappingFailed, match=re.escape("fields.version: got int '-3', expected a whole number")):
        record_from_message(SPARKPLUG, system="mes", topic="spBv1.0/g/DDATA/n/d", payload=payload, received_at=NOW)
    long_key = "x" * 300
    record = order(b'{"status": "ok", "done": 1, "total": 2, "ts": 1}', topic=f"plant/p/line/l/order/{long_key}/status")
    assert record.ref.key == long_key  # the key is not a display field: kept whole
