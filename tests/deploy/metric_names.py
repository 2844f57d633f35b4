"""The metric names threadlink's code defines, for the checks that deploy/ (alert rules,
dashboard) names only metrics that exist."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

#: Each of these defines its metrics when imported.
MODULES = (
    "connectors.runtime.metrics",
    "streams.flows.follow",
    "streams.flows.link",
    "streams.flows.know",
    "streams.flows.escalate",
    "streams.flows.reach",
    "streams.reach_timer",
    "streams.table_sizes",
    "streams.flows.runner",
    "streams.lag",
)

#: A metric name in PromQL (label names and values never start with it; job names use hyphens).
METRIC = re.compile(r"\bthreadlink_[a-z0-9_]+")
#: A recording rule's name (level:metric:operations).
RECORDED = re.compile(r"\bthreadlink:[a-z0-9_:]+")


def defined_metrics() -> set[str]:
    """Every sample name the code's metrics expose: counters with `_total` (and `_created`),
    histograms with `_bucket`, `_sum` and `_count`, gauges as they are."""
    from prometheus_client import REGISTRY

    for module in MODULES:
        importlib.import_module(module)
    families = list(REGISTRY.collect())
    names = {sample.name for family in families for sample in family.samples}
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
        "summary": ("", "_sum", "_count", "_created"),
    }
    for family in families:
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


def recorded_metrics() -> set[str]:
    """The names the recording rules of deploy/prometheus write."""
    doc = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "threadlink.rules.yml").read_text())
    return {rule["record"] for group in doc["groups"] for rule in group["rules"] if "record" in rule}


def names_in(expr: str) -> set[str]:
    return set(METRIC.findall(expr)) | set(RECORDED.findall(expr))
