"""`threadlink status`: is threadlink healthy, at a glance. From the broker: each sink's consumer
group (members, lag), the streams workers' group (members, lag per input topic) and the
dead-letter topic; from the processes' own endpoints: the connectors' and one worker's
/healthz (which sinks are down, and why)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import httpx
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from threadlink.config import Settings

#: Attempts to reach a process or the broker give up after this; status is for a glance.
TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Row:
    what: str
    name: str
    state: str
    detail: str = ""


def gather(settings: Settings) -> list[Row]:
    rows = [_process("connectors", _local(settings.http.host), settings.http.port)]
    if settings.streams.web_port:
        rows.append(_process("streams", _local(settings.streams.web_host), settings.streams.web_port))
    try:
        rows += _from_broker(settings)
    except KafkaError as exc:
        rows.append(Row("broker", settings.kafka.bootstrap_servers or "(unset)", "unreachable", type(exc).__name__))
    return rows


def render(rows: list[Row]) -> str:
    header = Row("WHAT", "NAME", "STATE", "DETAIL")
    widths = [max(len(getattr(r, f)) for r in [header, *rows]) for f in ("what", "name", "state")]
    return "\n".join(
        f"{r.what:<{widths[0]}}  {r.name:<{widths[1]}}  {r.state:<{widths[2]}}  {r.detail}".rstrip()
        for r in [header, *rows]
    )


def healthy(rows: list[Row]) -> bool:
    return all(row.state in ("ok", "up", "empty", "idle") for row in rows)


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _process(name: str, host: str, port: int) -> Row:
    url = f"http://{host}:{port}/healthz"
    try:
        response = httpx.get(url, timeout=TIMEOUT_S)
        body: Any = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return Row("process", name, "down", f"{url}: {type(exc).__name__}")
    state = str(body.get("status", "unknown")) if isinstance(body, dict) else "unknown"
    problems = body.get("problems") if isinstance(body, dict) else None
    detail = "; ".join(f"{k}: {v}" for k, v in problems.items())[:300] if isinstance(problems, dict) else url
    return Row("process", name, state, detail)


def _from_broker(settings: Settings) -> list[Row]:
    servers = (settings.kafka.bootstrap_servers or "").split(",")
    names = settings.kafka.topics
    admin = KafkaAdminClient(bootstrap_servers=servers, client_id="threadlink-status", request_timeout_ms=5000)
    reader = KafkaConsumer(
        bootstrap_servers=servers, client_id="threadlink-status", request_timeout_ms=5000, enable_auto_commit=False
    )
    try:
        rows = [Row("broker", ",".join(servers), "up")]
        for name, entry in sorted(settings.connectors.items()):
            if entry.enabled:
                group = f"{names.namespace}.sink.{name}"
                rows.append(_group(admin, reader, "sink", group, [names.commands(name)], names.namespace))
        inputs = [names.social_events, names.records, names.record_comments, names.link_requests, names.outcomes]
        rows.append(_group(admin, reader, "streams", settings.streams.app_id, inputs, names.namespace))
        rows.append(_dead_letters(reader, names.dead_letters))
        return rows
    finally:
        with contextlib.suppress(Exception):
            reader.close()
        with contextlib.suppress(Exception):
            admin.close()


def _group(
    admin: KafkaAdminClient, reader: KafkaConsumer, what: str, group: str, topics: list[str], namespace: str
) -> Row:
    # kafka-python 3: {group: {"members": [...], ...}} and {group: {TopicPartition: OffsetAndMetadata}}
    description = admin.describe_groups([group]).get(group) or {}
    members = len(description.get("members") or [])
    committed = admin.list_group_offsets(group).get(group) or {}
    partitions = [TopicPartition(t, p) for t in topics for p in sorted(reader.partitions_for_topic(t) or ())]
    ends = reader.end_offsets(partitions) if partitions else {}
    lag = {
        topic: sum(
            max(0, ends[tp] - (committed[tp].offset if tp in committed else 0)) for tp in ends if tp.topic == topic
        )
        for topic in topics
    }
    total = sum(lag.values())
    state = "up" if members else ("idle" if total == 0 else "down")
    detail = f"{members} member(s), lag {total}" + (
        " (" + ", ".join(f"{t.removeprefix(namespace + '.')} {n}" for t, n in lag.items() if n) + ")"
        if total and len(topics) > 1
        else ""
    )
    return Row(what, group, state, detail)


def _dead_letters(reader: KafkaConsumer, topic: str) -> Row:
    partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
    if not partitions:
        return Row("dead letters", topic, "missing", "run `threadlink topics apply`")
    ends, starts = reader.end_offsets(partitions), reader.beginning_offsets(partitions)
    held = sum(ends[tp] - starts[tp] for tp in partitions)
    return Row("dead letters", topic, "empty" if held == 0 else "letters", f"{held} held (`threadlink dlq list`)")
