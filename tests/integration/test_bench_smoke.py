"""`make bench` at toy sizes, so the harness cannot rot silently: every figure is measured and
written, and the run leaves no topic behind. No speed is asserted (a noisy 2-core machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def number(doc: dict, *path: str) -> float:
    value = doc
    for part in path:
        assert isinstance(value, dict) and part in value, f"{'.'.join(path)} missing: {json.dumps(value)[:400]}"
        value = value[part]
    assert isinstance(value, int | float) and value > 0, f"{'.'.join(path)} is {value!r}"
    return value


def test_bench_at_toy_sizes_measures_every_figure(kafka_bootstrap: str, tmp_path: Path) -> None:
    args = ["--sizes", "1000", "--messages", "200", "--link-tickets", "1000", "--broker-records", "1000"]
    args += ["--measure-s", "60", "--step-limit", "120", "--max-minutes", "5", "--label", "smoke"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--bootstrap", kafka_bootstrap, "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert len(runs) == 1
    run = runs[0]
    assert run["label"] == "smoke" and run["aborted"] is None
    assert run["git"]["commit"] and run["machine"]["cores"] and run["machine"]["cpu"]
    assert all(run["versions"][name] for name in ("python", "faust", "aiokafka", "kafka_python", "kafka"))
    figures = run["figures"]
    for side in ("producer", "consumer"):
        number(figures, "broker", side, "records_per_s")
        number(figures, "broker", side, "mb_per_s")
    for flow in (("plain_faust", "passthrough"), ("plain_faust", "lookup"), ("link_flow",)):
        number(figures, *flow, "messages_per_s")
        figure = figures[flow[0]] if len(flow) == 1 else figures[flow[0]][flow[1]]
        assert figure["ended"] == "complete" and figure["outputs"] == figure["outputs_expected"], figure
        # Counted up to the last message with an output in each partition: the tail of a
        # partition may mention nothing.
        assert 0 < figure["messages_processed"] <= 200, figure
    assert figures["plain_faust"]["passthrough"]["messages_processed"] == 200
    for phase, what in (("load", "seconds"), ("restart", "serve_s")):
        number(figures, "tables", "1000", phase, what)
        number(figures, "tables", "1000", phase, "peak_rss_bytes")
        number(figures, "tables", "1000", phase, "settled_rss_bytes")
    for ratio in ("plain_passthrough_vs_broker", "plain_lookup_vs_broker", "link_flow_vs_broker"):
        number(run, "ratios", ratio)
    number(run, "ratios", "link_flow_vs_plain_lookup")

    results = (tmp_path / "results.md").read_text()
    for heading in ("## Throughput", "## Table load and restart", "## Before/after", "## Workload"):
        assert heading in results
    assert "not measured:" not in results.split("## How it is measured")[0]

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap.split(","), client_id="threadlink-tests")
    try:
        left = [t for t in admin.list_topics() if t.startswith(run["run_id"])]
    finally:
        admin.close()
    assert left == [], "the bench left topics behind"
