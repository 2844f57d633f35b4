"""deploy/grafana: the dashboard is well-formed Grafana JSON, every panel has a datasource and a
query, every metric its queries name is defined in the code (or by a recording rule), and the
checked-in JSON is what deploy/grafana/dashboard.py writes."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.metric_names import defined_metrics, names_in, recorded_metrics

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
ROWS = ["Intake", "Streams", "Sinks", "Dialog speed", "Dead letters"]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    doc = json.loads((GRAFANA / "threadlink.json").read_text())
    assert isinstance(doc, dict)
    return doc


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_dashboard_json_is_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("grafana_dashboard", GRAFANA / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (GRAFANA / "threadlink.json").read_text() == module.render(), (
        "deploy/grafana/threadlink.json drifted: run .venv/bin/python deploy/grafana/dashboard.py"
    )


def test_dashboard_is_well_formed(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "threadlink"
    assert dashboard["schemaVersion"] >= 39
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ROWS
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for p in dashboard["panels"]:
        grid = p["gridPos"]
        assert {"h", "w", "x", "y"} <= grid.keys(), p["title"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, f"{p['title']} is wider than the grid"
    # No two panels overlap on the grid.
    cells: dict[tuple[int, int], str] = {}
    for p in dashboard["panels"]:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]


def test_templated_by_environment_and_connector(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for name in ("environment", "connector"):
        assert variables[name]["type"] == "query"
        assert variables[name]["query"]["query"].startswith("label_values(")
        assert variables[name]["query"]["query"].rstrip(")").endswith(name)
    # The connector variable's metric-name pattern matches metrics that carry the label.
    pattern = re.search(r'__name__=~"([^"]+)"', variables["connector"]["query"]["query"])
    assert pattern is not None
    assert any(re.fullmatch(pattern.group(1), name) for name in defined_metrics())
    for p in panels(dashboard):
        for t in p["targets"]:
            assert "$environment" in t["expr"], f"{p['title']}: {t['expr']} is not filtered by environment"


def test_every_panel_has_a_datasource_and_a_query(dashboard: dict[str, Any]) -> None:
    assert len(panels(dashboard)) >= 20
    for p in panels(dashboard):
        assert p["datasource"]["type"] == "prometheus", p["title"]
        assert p["datasource"]["uid"], p["title"]
        assert p["targets"], f"{p['title']} has no query"
        for t in p["targets"]:
            assert t["expr"].strip(), f"{p['title']} has an empty query"
            assert t["datasource"]["uid"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]


def test_every_metric_the_panels_name_is_defined_in_the_code(dashboard: dict[str, Any]) -> None:
    known = defined_metrics() | recorded_metrics()
    named: set[str] = set()
    for p in panels(dashboard):
        found = {name for t in p["targets"] for name in names_in(t["expr"])}
        assert found, f"{p['title']} names no threadlink metric"
        assert found <= known, f"{p['title']}: not defined in the code: {sorted(found - known)}"
        named |= found
    # Each concern of the brief has its metric on the dashboard.
    for metric in (
        "threadlink_connector_webhook_requests_total",
        "threadlink_connector_events_published_total",
        "threadlink_stream_links_total",
        "threadlink_stream_consumer_lag_records",
        "threadlink_sink_consumer_lag_records",
        "threadlink_sink_ledger_entries",
        "threadlink_sink_commands_total",
        "threadlink_connector_api_requests_total",
        "threadlink_sink_retries_total",
        "threadlink_sink_rate_limited_waits_total",
        "threadlink_sink_up",
        "threadlink_end_to_end_latency_seconds_bucket",
        "threadlink_deadletters_total",
    ):
        assert metric in named, f"the dashboard does not show {metric}"


def test_provisioning_points_at_the_dashboard_and_the_datasource(dashboard: dict[str, Any]) -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    default = next(v for v in dashboard["templating"]["list"] if v["name"] == "datasource")["current"]["value"]
    assert source["uid"] == default
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "threadlink.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


def test_every_panel_query_is_valid_promql(dashboard: dict[str, Any], promtool: str, tmp_path: Path) -> None:
    """promtool parses each query (as a recording rule), with the dashboard's variables filled in
    as Grafana would."""
    rules = []
    for p in panels(dashboard):
        for t in p["targets"]:
            expr = t["expr"].replace("$__rate_interval", "1m").replace("$environment", ".*").replace("$connector", ".*")
            rules.append({"record": f"panel_{p['id']}_{t['refId']}", "expr": expr})
    path = tmp_path / "panels.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
