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
    args += ["--measure-s", "60", "--step-limit", "120", "--max-minutes", "9", "--label", "smoke"]
    # The sink, latency and webhook-memory steps (the last has fixed sizes: 100 + 200 requests).
    args += ["--sink-commands", "200", "--hot-commands", "3", "--other-commands", "1", "--ledger-entries", "2000"]
    args += ["--latency-rates", "10,20", "--latency-s", "2", "--latency-threads", "20", "--mqtt-messages", "300"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--bootstrap", kafka_bootstrap, "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=660,
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

    sinks = figures["sinks"]
    number(sinks, "throughput", "commands_per_s")
    number(sinks, "throughput", "sink_cpu_ms_per_command")
    number(sinks, "throughput", "peak_rss_bytes")
    assert sinks["throughput"]["outcome_statuses"] == {"done": 200}, sinks["throughput"]
    limited = sinks["per_channel"]
    for name in ("commands_per_s_all_channels_busy", "max_posts_in_1s_any_channel", "others_done_s_median"):
        number(limited, name)
    number(limited, "hot_done_s")
    assert isinstance(limited["rate_limited_429"], int), limited
    assert limited["outcome_statuses"] == {"done": limited["commands"]}, limited
    for name in ("serve_s", "peak_rss_bytes", "settled_rss_bytes"):
        number(sinks, "ledger_restart", name)
    # The command the ledger had as done was skipped, the new one posted.
    assert sinks["ledger_restart"]["outcome_statuses"] == {"redelivered": 1, "done": 1}, sinks["ledger_restart"]
    assert sinks["ledger_restart"]["posts"] == 1
    rates = figures["latency"]["rates"]
    for rate in ("10", "20"):
        for name in ("accepted_per_s", "cards_per_s"):
            number(rates, rate, name)
        for stage in ("latency_ms", "to_command_ms", "command_to_post_ms", "ack_ms"):
            for p in ("p50", "p95", "p99"):
                number(rates, rate, stage, p)
        assert rates[rate]["drained"] and rates[rate]["cards"] == rates[rate]["accepted"], rates[rate]
    assert (tmp_path / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    memory = figures["webhook_memory"]
    for name in ("baseline_rss_bytes", "peak_rss_bytes", "after_rss_bytes"):
        number(memory, name)
    assert isinstance(memory["growth_bytes"], int), memory
    assert memory["oversized_answers"] == {"413": 100}, memory

    shop_floor = figures["mqtt"]
    for name in ("broker_drain_per_s", "source_into_kafka_per_s", "publish_per_s", "batches"):
        number(shop_floor, name)
    assert shop_floor["messages"] == 300, shop_floor

    results = (tmp_path / "results.md").read_text()
    for heading in ("## Throughput", "## Table load and restart", "## Before/after", "## Workload"):
        assert heading in results
    for heading in ("## Slack sink", "## End-to-end latency", "## Webhook memory under hostile load", "## Shop floor"):
        assert heading in results
    assert "not measured:" not in results.split("## How it is measured")[0]

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap.split(","), client_id="threadlink-tests")
    try:
        left = [t for t in admin.list_topics() if t.startswith(run["run_id"])]
    finally:
        admin.close()
    assert left == [], "the bench left topics behind"
