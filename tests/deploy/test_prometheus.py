"""promtool on deploy/prometheus: the config and rules check, and every alert's unit tests pass."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.metric_names import defined_metrics, names_in, recorded_metrics

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "rules/threadlink.rules.yml"],
        ["test", "rules", "tests/threadlink.test.yml"],
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool(promtool: str, args: list[str]) -> None:
    result = subprocess.run([promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_the_rules_name_is_defined_in_the_code() -> None:
    doc = yaml.safe_load((PROMETHEUS / "rules" / "threadlink.rules.yml").read_text())
    named = {name for group in doc["groups"] for rule in group["rules"] for name in names_in(rule["expr"])}
    assert named, "the rules name no threadlink metric"
    assert named <= defined_metrics() | recorded_metrics(), (
        f"not defined in the code: {sorted(named - defined_metrics() - recorded_metrics())}"
    )
