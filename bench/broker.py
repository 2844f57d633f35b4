"""The broker's own limit, measured with Kafka's tools (deploy/kafka/lib holds kafka-tools):
`ProducerPerformance` (acks=all) with the workload's message envelopes as payloads, then
`ConsumerPerformance` reading them back, on a topic with the bench's input partition count."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

from bench import workload
from bench.budget import StepTimeout
from bench.context import REPO, RunContext

LIB = REPO / "deploy" / "kafka" / "lib"
HEAP = "-Xmx512m"

# "300000 records sent, 51234.5 records/sec (46.12 MB/sec), 534.69 ms avg latency, 825.00 ms max latency, ..."
PRODUCER_LINE = re.compile(
    r"(?P<records>\d+) records sent, (?P<rps>[\d.]+) records/sec \((?P<mbps>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency"
    r"(?:, (?P<p50>\d+) ms 50th, (?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th)?"
)


def kafka_version() -> str | None:
    jar = next(iter(sorted(LIB.glob("kafka-clients-*.jar"))), None)
    return jar.stem.removeprefix("kafka-clients-") if jar else None


def _java(main: str, args: list[str], timeout_s: float) -> str:
    java = shutil.which("java")
    if not java:
        raise RuntimeError("java is not on PATH (scripts/setup.sh installs it)")
    try:
        proc = subprocess.run(
            [java, HEAP, "-cp", f"{LIB}/*", main, *args],
            capture_output=True,
            text=True,
            timeout=max(timeout_s, 1),
            cwd=REPO,
        )
    except subprocess.TimeoutExpired:
        raise StepTimeout(f"exceeded {timeout_s:.0f} s ({main.rsplit('.', 1)[-1]})") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{main} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-2000:]}")
    return proc.stdout


def parse_producer(output: str) -> dict[str, Any]:
    lines = [m for m in map(PRODUCER_LINE.search, output.splitlines()) if m]
    if not lines:
        raise RuntimeError(f"no summary line in ProducerPerformance's output:\n{output[-1000:]}")
    last = lines[-1]  # the summary; earlier lines are the 5-second reports
    result: dict[str, Any] = {
        "records": int(last["records"]),
        "records_per_s": float(last["rps"]),
        "mb_per_s": float(last["mbps"]),
        "avg_latency_ms": float(last["avg"]),
        "max_latency_ms": float(last["max"]),
    }
    for name in ("p50", "p95", "p99"):
        if last[name] is not None:
            result[f"{name}_latency_ms"] = int(last[name])
    return result


def parse_consumer(output: str) -> dict[str, Any]:
    """The CSV ConsumerPerformance prints: header, then one row."""
    rows = [line for line in output.splitlines() if "," in line]
    header = next((i for i, line in enumerate(rows) if line.startswith("start.time")), None)
    if header is None or header + 1 >= len(rows):
        raise RuntimeError(f"no result row in ConsumerPerformance's output:\n{output[-1000:]}")
    names, values = rows[header].split(","), rows[header + 1].split(",")
    fields = {n.strip(): v.strip() for n, v in zip(names, values, strict=False)}
    return {
        "records": int(fields["data.consumed.in.nMsg"]),
        # fetch.*: the time spent fetching, without joining the group (rebalance.time.ms).
        "records_per_s": float(fields["fetch.nMsg.sec"]),
        "mb_per_s": float(fields["fetch.MB.sec"]),
        "records_per_s_with_group_join": float(fields["nMsg.sec"]),
        "rebalance_ms": int(fields["rebalance.time.ms"]),
    }


def measure(ctx: RunContext, records: int) -> dict[str, Any]:
    deadline = ctx.budget.step(ctx.step_limit_s)
    topic = f"{ctx.namespace('broker')}.perf"
    ctx.admin.create_topics({topic: (workload.INPUT_PARTITIONS, {})})
    payloads = ctx.run_dir / "payloads.txt"
    sample = workload.payload_sample()
    payloads.write_bytes(b"\n".join(sample) + b"\n")
    ctx.budget.say(
        f"  ProducerPerformance: {records:,} records of {min(map(len, sample))}-{max(map(len, sample))} bytes"
    )
    produced = _java(
        "org.apache.kafka.tools.ProducerPerformance",
        [
            "--topic",
            topic,
            "--num-records",
            str(records),
            "--throughput",
            "-1",
            "--payload-file",
            str(payloads),
            "--producer-props",
            f"bootstrap.servers={ctx.bootstrap}",
            "acks=all",
            "client.id=threadlink-bench",
        ],
        deadline.remaining(),
    )
    producer = parse_producer(produced)
    ctx.budget.say(f"  producer: {producer['records_per_s']:,.0f} records/s; ConsumerPerformance")
    consumed = _java(
        "org.apache.kafka.tools.ConsumerPerformance",
        [
            "--bootstrap-server",
            ctx.bootstrap,
            "--topic",
            topic,
            "--messages",
            str(records),
            "--timeout",
            "30000",
            "--group",
            f"{ctx.namespace('broker')}-perf-consumer",
        ],
        deadline.remaining(),
    )
    consumer = parse_consumer(consumed)
    payload_sizes = sorted(map(len, sample))
    return {
        "topic_partitions": workload.INPUT_PARTITIONS,
        "payload_bytes": {
            "min": payload_sizes[0],
            "median": payload_sizes[len(payload_sizes) // 2],
            "max": payload_sizes[-1],
        },
        "producer": {**producer, "acks": "all"},
        "consumer": consumer,
        "limit_records_per_s": min(producer["records_per_s"], consumer["records_per_s"]),
    }
