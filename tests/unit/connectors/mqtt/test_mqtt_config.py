"""A typo in an MQTT mapping is a clear message that names where it is, never a traceback."""

from pathlib import Path

import pytest

from connectors.mqtt.config import MqttConfig
from threadlink.config import ConfigError, load_settings

pytestmark = pytest.mark.unit

GOOD = """
kafka:
  bootstrap_servers: 127.0.0.1:9092
streams:
  mention_patterns: []
connectors:
  mes:
    type: mqtt
    host: 127.0.0.1
    password: very-secret-mqtt
    mappings:
      - topic: plant/{plant}/line/{line}/order/{order}/status
        kind: production_order
        key: "{order}"
        fields:
          plant: "{plant}"
          line: "{line}"
          status: "{payload.status}"
          updated_at: "{payload.ts}"
      - topic: spBv1.0/{group}/DDATA/{node}/{device}
        kind: machine_state
        key: "{node}-{device}"
        fields:
          state: "{payload.metrics[name=State].value}"
          reason: "{payload.metrics[name=Reason].value?}"
"""


def problems(tmp_path: Path, text: str) -> str:
    path = tmp_path / "threadlink.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return str(info.value)


def test_the_example_config_loads_and_subscribes_to_filters_in_a_share_group(tmp_path: Path) -> None:
    path = tmp_path / "threadlink.yaml"
    path.write_text(GOOD)
    settings = load_settings(path)
    config = MqttConfig.model_validate(settings.connectors["mes"].plugin_fields())
    assert config.subscriptions() == [
        "$share/threadlink/plant/+/line/+/order/+/status",
        "$share/threadlink/spBv1.0/+/DDATA/+/+",
    ]
    assert config.client_id_for("mes").startswith("threadlink-mes-")
    assert config.model_copy(update={"shared_group": None}).subscriptions()[0] == "plant/+/line/+/order/+/status"


def test_a_misspelt_record_field_names_its_mapping_and_the_known_fields(tmp_path: Path) -> None:
    message = problems(tmp_path, GOOD.replace("          status:", "          stauts:"))
    assert "connectors.mes.mappings.0: fields.stauts: not a field of a production_order record" in message
    assert "known: plant, line, status" in message
    assert "very-secret-mqtt" not in message  # never echoes input: it may be a secret


def test_a_capture_the_topic_does_not_have_is_named(tmp_path: Path) -> None:
    message = problems(tmp_path, GOOD.replace('key: "{order}"', 'key: "{ordr}"'))
    assert "connectors.mes.mappings.0: key: {ordr} is not captured by the topic pattern" in message
    assert "(captures: line, order, plant)" in message


def test_bad_topic_patterns_and_paths_are_located(tmp_path: Path) -> None:
    bad = GOOD.replace("plant/{plant}/line", "plant/#/line").replace("[name=State]", "[name=State")
    message = problems(tmp_path, bad)
    assert "connectors.mes.mappings.0.topic: level 2: '#' may only be the last level" in message
    assert (
        "connectors.mes.mappings.1: fields.state: {payload.metrics[name=State.value}: cannot read the path" in message
    )


def test_every_problem_at_once_with_unknown_settings_and_kinds(tmp_path: Path) -> None:
    bad = GOOD.replace("    host: 127.0.0.1\n", "    hots: 127.0.0.1\n").replace("kind: machine_state", "kind: machine")
    bad = bad.replace("{payload.status}", "{payload.status")
    message = problems(tmp_path, bad)
    assert "connectors.mes.host: required setting is missing" in message
    assert "connectors.mes.hots: unknown setting" in message
    assert "connectors.mes.mappings.1.kind: Input should be 'production_order' or 'machine_state'" in message
    assert "connectors.mes.mappings.0: fields.status: '{payload.status': an unmatched brace" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"mappings": []}, "mappings: List should have at least 1 item"),
        ({"shared_group": "a/b"}, "shared_group: a share group name is a non-empty word"),
        ({"receive_maximum": 0}, "receive_maximum: Input should be greater than or equal to 1"),
    ],
)
def test_connection_settings_are_checked(tmp_path: Path, change: dict[str, object], expected: str) -> None:
    import yaml

    doc = yaml.safe_load(GOOD)
    doc["connectors"]["mes"].update(change)
    assert f"connectors.mes.{expected}" in problems(tmp_path, yaml.safe_dump(doc))
