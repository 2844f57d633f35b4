"""A typo in an OPC UA mapping is a clear message that names where it is, never a traceback."""

from pathlib import Path

import pytest
import yaml

from connectors.opcua.config import OpcuaConfig
from threadlink.config import ConfigError, load_settings

pytestmark = pytest.mark.unit

GOOD = """
kafka:
  bootstrap_servers: 127.0.0.1:9092
streams:
  mention_patterns: []
connectors:
  presses:
    type: opcua
    endpoint: opc.tcp://127.0.0.1:4840/plant/
    username: threadlink
    password: very-secret-opcua
    mappings:
      - node: "0:Objects/2:Plant/2:{line}/2:{machine}/2:State"
        kind: machine_state
        key: "{line}-{machine}"
        field: state
        values: {"0": idle, "1": running, "2": down}
        fields: {plant: p1, line: "{line}", machine: "{machine}"}
      - node: "ns=2;s=Orders.PO-1001.Status"
        kind: production_order
        key: PO-1001
        field: status
"""


def problems(tmp_path: Path, text: str) -> str:
    path = tmp_path / "threadlink.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return str(info.value)


def config_with(change: dict[str, object]) -> str:
    doc = yaml.safe_load(GOOD)
    doc["connectors"]["presses"].update(change)
    return yaml.safe_dump(doc)


def test_the_example_config_loads_with_its_node_ids_and_browse_paths(tmp_path: Path) -> None:
    path = tmp_path / "threadlink.yaml"
    path.write_text(GOOD)
    config = OpcuaConfig.model_validate(load_settings(path).connectors["presses"].plugin_fields())
    browse, node_id = config.mappings
    assert browse.path.node_id is None and browse.path.names == {"line", "machine"}
    assert [level.text() for level in browse.path.levels] == [
        "0:Objects",
        "2:Plant",
        "2:{line}",
        "2:{machine}",
        "2:State",
    ]
    assert node_id.path.node_id == "ns=2;s=Orders.PO-1001.Status" and node_id.path.levels == ()
    assert config.password is not None and "very-secret-opcua" not in repr(config)


def test_a_misspelt_record_field_names_its_mapping_and_the_known_fields(tmp_path: Path) -> None:
    message = problems(tmp_path, GOOD.replace("field: state", "field: stat"))
    assert "connectors.presses.mappings.0: field: 'stat' is not a field of a machine_state record" in message
    assert "known: plant, line, machine, state, reason, order" in message
    assert "very-secret-opcua" not in message  # never echoes input: it may be a secret


def test_a_capture_the_browse_path_does_not_have_is_named(tmp_path: Path) -> None:
    message = problems(tmp_path, GOOD.replace('key: "{line}-{machine}"', 'key: "{line}-{mashine}"'))
    assert "connectors.presses.mappings.0: key: {mashine} is not captured by the node's browse path" in message
    assert "(captures: line, machine)" in message


def test_bad_node_paths_are_located(tmp_path: Path) -> None:
    bad = GOOD.replace("2:Plant/2:{line}", "Plant/2:{line}").replace("ns=2;s=Orders", "ns=2;s={order}")
    message = problems(tmp_path, bad)
    assert "connectors.presses.mappings.0.node: level 2: 'Plant' is not <namespace index>:<browse name>" in message
    assert "connectors.presses.mappings.1.node: a node id cannot capture" in message


def test_every_problem_at_once(tmp_path: Path) -> None:
    bad = GOOD.replace("    endpoint: opc.tcp://127.0.0.1:4840/plant/\n", "    endpont: opc.tcp://x/\n")
    bad = bad.replace("kind: production_order", "kind: order").replace('machine: "{machine}"', "state: x")
    message = problems(tmp_path, bad)
    assert "connectors.presses.endpoint: required setting is missing" in message
    assert "connectors.presses.endpont: unknown setting" in message
    assert "connectors.presses.mappings.1.kind: Input should be 'production_order' or 'machine_state'" in message
    assert "connectors.presses.mappings.0: fields.state: is the field the node's value sets" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"mappings": []}, "mappings: List should have at least 1 item"),
        ({"endpoint": "http://plant:4840"}, "endpoint: an OPC UA endpoint looks like opc.tcp://"),
        ({"endpoint": "opc.tcp://u:p@plant:4840/"}, "endpoint: put the credentials in username"),
        ({"security": "sign"}, "security: Input should be 'none'"),
        ({"username": None}, "password: set username too"),
        ({"publishing_interval_ms": 1}, "publishing_interval_ms: Input should be greater than or equal to 10"),
    ],
)
def test_connection_settings_are_checked(tmp_path: Path, change: dict[str, object], expected: str) -> None:
    message = problems(tmp_path, config_with(change))
    assert "connectors.presses" in message and expected in message
    assert "very-secret-opcua" not in message
