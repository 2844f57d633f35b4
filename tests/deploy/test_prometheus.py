"""promtool on deploy/prometheus: the config and rules check, and every alert's unit tests pass."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True)
            subprocess.run(install, env=env, capture_output=True)
        found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is missing and Debian's prometheus package could not be installed (needs root and apt)")
    return found


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
    import importlib
    import re

    import yaml
    from prometheus_client import REGISTRY

    # Each of these defines its metrics when imported.
    for module in ("connectors.runtime.metrics", "streams.flows.follow", "streams.flows.link", "streams.lag"):
        importlib.import_module(module)
    importlib.import_module("streams.flows.runner")

    defined = {sample.name for family in REGISTRY.collect() for sample in family.samples}
    defined |= {
        family.name + suffix for family in REGISTRY.collect() for suffix in ("", "_total", "_bucket", "_count", "_sum")
    }
    doc = yaml.safe_load((PROMETHEUS / "rules" / "threadlink.rules.yml").read_text())
    named = {
        name
        for group in doc["groups"]
        for rule in group["rules"]
        for name in re.findall(r"\bthreadlink_[a-z0-9_]+", rule["expr"])
    }
    assert named, "the rules name no threadlink metric"
    assert named <= defined, f"not defined in the code: {sorted(named - defined)}"
