"""OPC UA data values to records: the mapped field, the captures, the version from the source
timestamp, and every bad value refused with the reason its dead letter carries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asyncua import ua

from connectors.opcua.config import OpcuaMapping
from connectors.opcua.mapping import MappingFailed, NodePath, Reading, RecordState, field_value
from connectors.opcua.source import opcua_dead_letter, reading_of

pytestmark = pytest.mark.unit

AT = datetime(2026, 12, 3, 7, 0, tzinfo=UTC)
STATE = OpcuaMapping.model_validate(
    {
        "node": "0:Objects/2:Plant/2:{line}/2:{machine}/2:State",
        "kind": "machine_state",
        "key": "{line}-{machine}",
        "field": "state",
        "fields": {"plant": "p1", "line": "{line}", "machine": "{machine}"},
    }
)
REASON = OpcuaMapping.model_validate(
    {
        "node": "0:Objects/2:Plant/2:{line}/2:{machine}/2:Reason",
        "kind": "machine_state",
        "key": "{line}-{machine}",
        "field": "reason",
    }
)
NODE = "ns=2;s=Line1.Press3.State"


def reading(value: Any, *, status: str = "Good", at: datetime | None = AT) -> Reading:
    return Reading(NODE, value, status, status == "Good", at, None)


def test_a_value_sets_its_field_and_the_captures_the_others() -> None:
    state = RecordState(STATE, "Line1-Press3", {})
    state.apply(STATE, {"line": "Line1", "machine": "Press3"}, field_value(STATE, reading("down")), AT)
    record = state.record("presses")
    assert (record.ref.id, record.kind, record.plant, record.line, record.machine, record.state) == (
        "presses:Line1-Press3",
        "machine_state",
        "p1",
        "Line1",
        "Press3",
        "down",
    )
    assert record.title == "Machine Line1-Press3"
    assert record.updated_at == AT and record.version == int(AT.timestamp() * 1000)


def test_two_nodes_of_one_record_publish_it_whole_versioned_by_the_newest_source_timestamp() -> None:
    captures = {"line": "Line1", "machine": "Press3"}
    state = RecordState(STATE, "Line1-Press3", {})
    state.apply(STATE, captures, "down", AT)
    later = AT + timedelta(seconds=5)
    state.apply(REASON, captures, "jam", later)
    record = state.record("presses")
    assert (record.state, record.reason, record.updated_at) == ("down", "jam", later)
    again = RecordState(STATE, "Line1-Press3", {})  # what a reconnect (or a second replica) reads
    again.apply(STATE, captures, "down", AT)
    again.apply(REASON, captures, "jam", later)
    assert again.record("presses") == record  # the same record, the same version: a harmless repeat


def test_numbers_and_localized_text_are_text_and_an_enumeration_is_translated() -> None:
    assert field_value(STATE, reading(3)) == "3"
    assert field_value(STATE, reading(ua.LocalizedText("running", "en"))) == "running"
    enumerated = STATE.model_copy(update={"values": {"0": "idle", "1": "running"}})
    assert field_value(enumerated, reading(1)) == "running"
    with pytest.raises(MappingFailed, match=r"value 7 is not one of `values` \(0, 1\)"):
        field_value(enumerated, reading(7))


@pytest.mark.parametrize(
    ("value", "status", "reason"),
    [
        (None, "BadSensorFailure", "the server reports status BadSensorFailure, not Good"),
        ("down", "UncertainLastUsableValue", "the server reports status UncertainLastUsableValue, not Good"),
        (None, "Good", "the value is empty (null)"),
        (["down", "idle"], "Good", "got an array ['down', 'idle'], expected a text or number"),
        (b"\x01\x02", "Good", "got a ByteString b'\\x01\\x02', expected a text or number"),
    ],
)
def test_bad_values_are_refused_with_the_reason(value: Any, status: str, reason: str) -> None:
    with pytest.raises(MappingFailed) as info:
        field_value(STATE, reading(value, status=status))
    assert str(info.value) == f"{NODE}: {reason}"


def test_a_time_field_takes_a_datetime_only() -> None:
    due = OpcuaMapping.model_validate(
        {"node": "ns=2;s=Orders.PO-1.Due", "kind": "production_order", "key": "PO-1", "field": "due_at"}
    )
    assert field_value(due, reading(datetime(2026, 12, 24, 12, 0))) == datetime(2026, 12, 24, 12, 0, tzinfo=UTC)
    with pytest.raises(MappingFailed, match="got a str '2026-12-24', expected a DateTime"):
        field_value(due, reading("2026-12-24"))


def test_a_data_value_from_the_wire_keeps_its_status_and_timestamps() -> None:
    bad = reading_of(
        NODE,
        ua.DataValue(ua.Variant(None), StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure), SourceTimestamp=AT),
    )
    assert (bad.good, bad.status, bad.source_timestamp, bad.value) == (False, "BadSensorFailure", AT, None)
    good = reading_of(NODE, ua.DataValue(ua.Variant("down"), ServerTimestamp=AT.replace(tzinfo=None)))
    assert (good.good, good.status, good.value, good.moment) == (True, "Good", "down", AT)


def test_a_dead_letter_carries_the_node_the_value_and_the_reason() -> None:
    bad = reading(["down", "idle"])
    letter = opcua_dead_letter("presses", bad, "ns=2;s=Line1.Press3.State: got an array")
    assert (letter.topic, letter.key, letter.consumer, letter.error_kind) == (
        "opcua:presses",
        NODE,
        "opcua.presses",
        "invalid",
    )
    assert json.loads(letter.value) == {
        "node": NODE,
        "value": ["down", "idle"],
        "status": "Good",
        "source_timestamp": AT.isoformat(),
    }
    assert letter.reason == "ns=2;s=Line1.Press3.State: got an array"


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("", "a node is a node id"),
        ("0:Objects/Plant", "level 2: 'Plant' is not <namespace index>:<browse name>"),
        ("0:Objects/2:{a}/2:{a}", "level 3: {a} is captured twice"),
        ("0:Objects/2:Press{n}", "level 2: 'Press{n}' mixes a capture with text"),
        ("0:Objects/2:{value}", "level 2: '{value}' is not a capture"),
        ("ns=2;s={order}", "a node id cannot capture"),
    ],
)
def test_bad_node_paths_say_what_is_wrong(path: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        NodePath.parse(path)
    assert problem in str(info.value)
