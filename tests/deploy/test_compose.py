"""deploy/compose/compose.yaml, checked without a container engine: valid by the Compose
Specification's JSON schema (tests/deploy/schemas/compose-spec.json, from compose-go v2.16.2,
the library `docker compose` itself loads files with), and consistent with the rest of deploy/:
the commands are threadlink's, the config it mounts loads, the ports probed are the ones served,
Prometheus scrapes the services by the names the alert rules use, Grafana gets its provisioning."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose"
SCHEMA = Path(__file__).with_name("schemas") / "compose-spec.json"
THREADLINK_SERVICES = ("topics", "connectors", "streams")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return dict(compose["services"])


def test_valid_by_the_compose_specification_schema(compose: dict[str, Any]) -> None:
    validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)


def test_the_schema_refuses_what_compose_would_refuse(compose: dict[str, Any]) -> None:
    """The schema is strict enough to catch mistakes: a misspelt key, a wrong condition."""
    validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
    typo = {**compose, "services": {**compose["services"], "kafka": {**compose["services"]["kafka"], "imagee": "x"}}}
    assert list(validator.iter_errors(typo))
    wrong = json.loads(json.dumps(compose))
    wrong["services"]["connectors"]["depends_on"]["topics"]["condition"] = "service_done"
    assert list(validator.iter_errors(wrong))


def test_every_service_is_there(services: dict[str, Any]) -> None:
    assert set(services) == {"kafka", "topics", "connectors", "streams", "prometheus", "grafana"}


def test_kafka_runs_in_kraft_mode_at_the_tested_version(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    pinned = re.search(r"<kafka.version>([^<]+)</kafka.version>", (ROOT / "deploy" / "kafka" / "pom.xml").read_text())
    assert pinned is not None
    assert kafka["image"] == f"apache/kafka:{pinned.group(1)}", "the broker version the tests run on"
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    assert not [name for name in env if "ZOOKEEPER" in name]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "topics come from `threadlink topics apply`"
    assert kafka["healthcheck"]["test"][0] == "CMD"


def test_threadlink_commands_exist_and_start_in_order(services: dict[str, Any]) -> None:
    from threadlink.cli import build_parser

    expected = {"topics": "cmd_topics_apply", "connectors": "cmd_connectors_run", "streams": "cmd_streams_run"}
    for name, func in expected.items():
        args = build_parser().parse_args(services[name]["command"])
        assert args.func.__name__ == func, name
        assert services[name]["build"]["dockerfile"] == "deploy/docker/Dockerfile"
        assert (COMPOSE / services[name]["build"]["context"] / services[name]["build"]["dockerfile"]).is_file()
    assert services["topics"]["restart"] == "no"
    assert services["topics"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    for name in ("connectors", "streams"):
        assert services[name]["depends_on"] == {"topics": {"condition": "service_completed_successfully"}}


def test_workers_are_replicas_up_to_the_partition_count(services: dict[str, Any]) -> None:
    from schemas.topics import STREAM_PARTITIONS

    assert 2 <= services["streams"]["deploy"]["replicas"] <= STREAM_PARTITIONS
    # Each replica keeps its RocksDB tables in a volume of its own (an anonymous one).
    assert "/var/lib/threadlink/streams" in services["streams"]["volumes"]


def test_the_mounted_config_loads_with_the_example_secrets(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from threadlink.config import connector_config, load_settings

    example = (COMPOSE / "threadlink.env.example").read_text().splitlines()
    names = [line.split("=", 1)[0] for line in example if line and not line.startswith("#")]
    assert names and all(name.startswith("THREADLINK_") for name in names)
    for name in names:
        monkeypatch.setenv(name, "placeholder-" + name.lower())
    for service in THREADLINK_SERVICES:
        assert services[service]["env_file"] == "threadlink.env"
        mounts = [v for v in services[service]["volumes"] if ":" in v]
        assert f"./threadlink.yaml:{services[service]['environment']['THREADLINK_CONFIG']}:ro" in mounts
    settings = load_settings(str(COMPOSE / "threadlink.yaml"))
    assert (
        settings.kafka.bootstrap_servers
        == services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].split("//")[1]
    )
    assert settings.http.host == "0.0.0.0" and settings.streams.web_host == "0.0.0.0"
    for name in settings.connectors:
        connector_config(settings, name)  # every connector's config is complete with the secrets set
    # The health check asks the port each process serves.
    assert services["connectors"]["environment"]["THREADLINK_HEALTH_PORT"] == str(settings.http.port)
    assert services["connectors"]["ports"] == [f"{settings.http.port}:{settings.http.port}"]
    assert services["streams"]["environment"]["THREADLINK_HEALTH_PORT"] == str(settings.streams.web_port)


def test_no_secret_is_written_in_the_compose_files(compose: dict[str, Any]) -> None:
    text = (COMPOSE / "compose.yaml").read_text() + (COMPOSE / "threadlink.yaml").read_text()
    for key, value in re.findall(r"^\s*([A-Za-z_]*(?:SECRET|TOKEN|PASSWORD)[A-Za-z_]*):\s*(\S.*)$", text, re.I | re.M):
        assert value.startswith("${"), f"{key} is written in the file; take it from the environment"
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "deploy/compose/threadlink.env" in ignored and "deploy/compose/.env" in ignored
    example_values = [
        line.split("=", 1)[1]
        for line in (COMPOSE / "threadlink.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert not any(example_values), "the example holds no value"


def test_prometheus_scrapes_the_services_as_the_rules_name_them(services: dict[str, Any], promtool: str) -> None:
    mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"] if v.startswith("."))
    config_path = (COMPOSE / next(src for src, dst in mounts.items() if dst.endswith("prometheus.yml"))).resolve()
    config = yaml.safe_load(config_path.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    rules = (ROOT / "deploy" / "prometheus" / "rules" / "threadlink.rules.yml").read_text()
    for job in jobs:
        assert f'job="{job}"' in rules, f"no alert watches the {job} job"
    (target,) = jobs["threadlink-connectors"]["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in services and services[host]["environment"]["THREADLINK_HEALTH_PORT"] == port
    (sd,) = jobs["threadlink-streams"]["dns_sd_configs"]
    assert (
        sd["names"] == ["streams"] and str(sd["port"]) == services["streams"]["environment"]["THREADLINK_HEALTH_PORT"]
    )
    # The rule files are mounted where the config names them.
    rule_dir = next(dst for src, dst in mounts.items() if src.endswith("/rules"))
    assert all(f"/etc/prometheus/{name}".startswith(rule_dir) for name in config["rule_files"])
    result = subprocess.run([promtool, "check", "config", str(config_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_gets_the_datasource_and_the_dashboard(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("."))
    for src in mounts:
        assert (COMPOSE / src).exists(), src
    provisioning = COMPOSE / next(src for src, dst in mounts.items() if dst == "/etc/grafana/provisioning")
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in services
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "threadlink.yaml").read_text())["providers"]
    dashboard_dst = next(dst for src, dst in mounts.items() if src.endswith("threadlink.json"))
    assert Path(dashboard_dst).parent == Path(provider["options"]["path"])
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")


def test_every_bind_mount_source_exists(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            if volume.startswith("."):
                assert (COMPOSE / volume.split(":")[0]).exists(), f"{name}: {volume}"


COMPOSE_GO = "github.com/compose-spec/compose-go/v2/cmd@v2.16.2"


@pytest.fixture(scope="module")
def compose_go_model() -> dict[str, Any]:
    """The file as `docker compose` loads it: compose-go's own validator (its `cmd`, built from
    the Go module proxy into .venv/compose-go, about 15 s the first time): its schema, anchors
    merged, paths resolved, normalised. Without interpolation: its command does not pass the
    environment on to `${VAR:?}` (the password's `:?` is tested above)."""
    import os
    import shutil

    bin_dir = ROOT / ".venv" / "compose-go"
    tool = bin_dir / "cmd"
    if not tool.exists():
        go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
        if go is None:
            pytest.skip(f"Go is missing: cannot build compose-go's validator ({COMPOSE_GO})")
        built = subprocess.run(
            [go, "install", COMPOSE_GO],
            env={**os.environ, "GOBIN": str(bin_dir)},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert built.returncode == 0, built.stderr
    result = subprocess.run(
        [str(tool), "--no-interpolation", "--format", "json", "compose.yaml"],
        cwd=COMPOSE,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    model = json.loads(result.stdout)
    assert isinstance(model, dict)
    return model


def test_compose_go_loads_it_as_meant(compose_go_model: dict[str, Any]) -> None:
    services = compose_go_model["services"]
    assert set(services) == {"kafka", "topics", "connectors", "streams", "prometheus", "grafana"}
    for name in THREADLINK_SERVICES:
        service = services[name]
        assert service["build"] == {"context": str(ROOT), "dockerfile": "deploy/docker/Dockerfile"}
        assert service["env_file"] == [{"path": str(COMPOSE / "threadlink.env"), "required": True}]
        config = next(v for v in service["volumes"] if v["target"] == "/etc/threadlink/threadlink.yaml")
        assert config == {
            "type": "bind",
            "source": str(COMPOSE / "threadlink.yaml"),
            "target": "/etc/threadlink/threadlink.yaml",
            "read_only": True,
            "bind": {"create_host_path": True},
        }
        assert service["environment"]["THREADLINK_CONFIG"] == "/etc/threadlink/threadlink.yaml"
    # The anchors merged as intended: the workers' own environment and volumes on top of the shared ones.
    streams = services["streams"]
    assert streams["environment"]["THREADLINK_HEALTH_PORT"] == "6066"
    assert {"type": "volume", "target": "/var/lib/threadlink/streams", "volume": {}} in streams["volumes"]
    assert streams["deploy"]["replicas"] == 2
    assert services["topics"]["restart"] == "no"
    assert services["connectors"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert set(compose_go_model["volumes"]) == {"kafka-data", "prometheus-data", "grafana-data"}


def test_compose_go_refuses_a_broken_file(compose_go_model: dict[str, Any], tmp_path: Path) -> None:
    """Its checks are real: a misspelt key is refused."""
    broken = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    broken["services"]["connectors"]["nosuch_key"] = True
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    tool = ROOT / ".venv" / "compose-go" / "cmd"
    result = subprocess.run(
        [str(tool), "--no-interpolation", "compose.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "nosuch" in result.stdout + result.stderr
