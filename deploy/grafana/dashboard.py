"""Writes deploy/grafana/threadlink.json, the Grafana dashboard of threadlink.

Edit the panels here, then run `.venv/bin/python deploy/grafana/dashboard.py`;
tests/deploy/test_grafana.py fails when the JSON and this file drift apart, and checks that every
metric a panel names is one the code defines. One row per concern: intake, streams, sinks, dialog
speed, dead letters. Every query is filtered by the dashboard's `environment` variable (the label
the scrape config puts on each target) and, where the metric has one, its `connector` label.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("threadlink.json")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
ENV = 'environment=~"$environment"'
CONN = f'{ENV}, connector=~"$connector"'
RATE = "[$__rate_interval]"


def rate(metric: str, by: str, selector: str = CONN) -> str:
    return f"sum by ({by}) (rate({metric}{{{selector}}}{RATE}))"


def quantile(q: float, metric: str, by: str, selector: str = CONN) -> str:
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{selector}}}{RATE})))"


def target(expr: str, legend: str, ref: str = "A") -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}


def panel(
    title: str,
    description: str,
    targets: list[tuple[str, str]],
    *,
    unit: str = "short",
    kind: str = "timeseries",
    width: int = 8,
) -> dict[str, Any]:
    refs = "ABCDEFGH"
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [target(expr, legend, refs[i]) for i, (expr, legend) in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True}}
        if kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
        "gridPos": {"h": 8, "w": width, "x": 0, "y": 0},
    }


ROWS: list[tuple[str, list[dict[str, Any]]]] = [
    (
        "Intake",
        [
            panel(
                "Webhook requests by outcome",
                "Every webhook request a source answered, by outcome (accepted, duplicate, ignored, refused, ...).",
                [
                    (
                        rate("threadlink_connector_webhook_requests_total", "connector, outcome"),
                        "{{connector}} {{outcome}}",
                    )
                ],
                unit="reqps",
            ),
            panel(
                "Events published",
                "Events the broker acknowledged (acks=all), by connector and topic.",
                [(rate("threadlink_connector_events_published_total", "connector, topic"), "{{connector}} {{topic}}")],
                unit="ops",
            ),
            panel(
                "Webhook requests rejected, by reason",
                "Requests not taken in: bad signature (unauthorized), malformed, too large, timeouts, overload, "
                "broker unavailable, dead-lettered.",
                [
                    (
                        rate(
                            "threadlink_connector_webhook_requests_total",
                            "connector, outcome",
                            CONN + ', outcome!~"accepted|duplicate|ignored"',
                        ),
                        "{{connector}} {{outcome}}",
                    )
                ],
                unit="reqps",
            ),
            panel(
                "Publish latency (p50, p99)",
                "From send to the broker's acknowledgement.",
                [
                    (quantile(0.5, "threadlink_connector_publish_duration_seconds", "connector"), "p50 {{connector}}"),
                    (quantile(0.99, "threadlink_connector_publish_duration_seconds", "connector"), "p99 {{connector}}"),
                ],
                unit="s",
            ),
            panel(
                "Polls by outcome",
                "Polling sources (Jira and the like): polls done, retried, failed.",
                [(rate("threadlink_connector_polls_total", "connector, outcome"), "{{connector}} {{outcome}}")],
                unit="ops",
            ),
            panel(
                "Stream sources: batches and reconnects",
                "Batches flushed by stream sources (MQTT, Matrix sync) and their reconnects after a lost connection.",
                [
                    (rate("threadlink_connector_stream_batches_total", "connector"), "batches {{connector}}"),
                    (rate("threadlink_connector_stream_reconnects_total", "connector"), "reconnects {{connector}}"),
                ],
                unit="ops",
            ),
        ],
    ),
    (
        "Streams",
        [
            panel(
                "Link requests by outcome",
                "What the link flow did with each mention: carded, waiting for the record, missing, already linked, "
                "hidden, ...",
                [(rate("threadlink_stream_links_total", "outcome", ENV), "{{outcome}}")],
                unit="ops",
            ),
            panel(
                "Record resolution: found and missing",
                "Mentions whose record was known and carded (hits), against mentions of records the core system "
                "says do not exist (misses) and mentions waiting for the record's first event.",
                [
                    (
                        rate("threadlink_stream_links_total", "outcome", ENV + ', outcome=~"carded|already_linked"'),
                        "hits",
                    ),
                    (rate("threadlink_stream_links_total", "outcome", ENV + ', outcome="missing"'), "misses"),
                    (rate("threadlink_stream_links_total", "outcome", ENV + ', outcome="waiting"'), "waiting"),
                ],
                unit="ops",
            ),
            panel(
                "Social messages by outcome",
                "Social events the link flow read: with mentions, without, own messages, edits, deletions, ...",
                [(rate("threadlink_stream_messages_total", "outcome", ENV), "{{outcome}}")],
                unit="ops",
            ),
            panel(
                "Flow decisions",
                "Follow, escalate and know decisions by outcome.",
                [
                    (rate("threadlink_stream_follow_total", "outcome", ENV), "follow {{outcome}}"),
                    (rate("threadlink_stream_escalate_total", "outcome", ENV), "escalate {{outcome}}"),
                    (rate("threadlink_stream_know_total", "outcome", ENV), "know {{outcome}}"),
                ],
                unit="ops",
            ),
            panel(
                "Events consumed by agent",
                "Events the flows consumed, by agent and outcome (handled, invalid, failed), and outputs re-sent "
                "after the broker refused them.",
                [
                    (rate("threadlink_stream_events_total", "agent, outcome", ENV), "{{agent}} {{outcome}}"),
                    (rate("threadlink_stream_resends_total", "agent", ENV), "{{agent}} resent"),
                ],
                unit="ops",
            ),
            panel(
                "Consumer lag",
                "Events on the workers' partitions not committed yet, by input topic; commands on the sinks' "
                "partitions not done yet, by connector. Alerts: ThreadlinkStreamsLagRising, ThreadlinkSinkLagRising.",
                [
                    ("sum by (topic) (threadlink_stream_consumer_lag_records{" + ENV + "})", "streams {{topic}}"),
                    ("sum by (connector) (threadlink_sink_consumer_lag_records{" + CONN + "})", "sink {{connector}}"),
                ],
            ),
            panel(
                "Table sizes: flow state",
                "Keys of the flows' tables (records, threads, the Reach watch), summed over the workers' own "
                "partitions (RocksDB's estimate).",
                [("sum by (table) (threadlink_stream_table_keys{" + ENV + "})", "{{table}}")],
            ),
            panel(
                "Table sizes: sink ledgers",
                "Done commands each sink remembers (its ledger table), which a restart reads back.",
                [("sum by (connector) (threadlink_sink_ledger_entries{" + CONN + "})", "{{connector}}")],
            ),
        ],
    ),
    (
        "Sinks",
        [
            panel(
                "API calls by method and status",
                "Calls to the platforms' HTTP APIs (Slack Web API, Jira REST), by platform, API method and HTTP "
                "status; transport_error: no answer came. By platform, not connector instance (filtered by "
                "environment only).",
                [
                    (
                        rate("threadlink_connector_api_requests_total", "platform, method, status", ENV),
                        "{{platform}} {{method}} {{status}}",
                    )
                ],
                unit="reqps",
            ),
            panel(
                "API auth failures (401, 403)",
                "Answers refusing the credential. Slack answers a revoked token with HTTP 200 and ok:false; the "
                "'Credential accepted' panel shows that case too.",
                [
                    (
                        rate(
                            "threadlink_connector_api_requests_total", "platform, method", ENV + ', status=~"401|403"'
                        ),
                        "{{platform}} {{method}}",
                    )
                ],
                unit="reqps",
            ),
            panel(
                "Commands by kind and outcome",
                "Commands the sinks carried out against the platforms' APIs: done, duplicate, superseded, "
                "dead-lettered.",
                [
                    (
                        rate("threadlink_sink_commands_total", "connector, kind, outcome"),
                        "{{connector}} {{kind}} {{outcome}}",
                    )
                ],
                unit="ops",
            ),
            panel(
                "Command duration (p50, p99)",
                "Time to carry out one command, retries included.",
                [
                    (
                        quantile(0.5, "threadlink_sink_command_duration_seconds", "connector, kind"),
                        "p50 {{connector}} {{kind}}",
                    ),
                    (
                        quantile(0.99, "threadlink_sink_command_duration_seconds", "connector, kind"),
                        "p99 {{connector}} {{kind}}",
                    ),
                ],
                unit="s",
            ),
            panel(
                "Outcomes the flows took in",
                "The sinks' outcome events as the flows read them, by command kind and status.",
                [(rate("threadlink_stream_outcomes_total", "kind, status", ENV), "{{kind}} {{status}}")],
                unit="ops",
            ),
            panel(
                "Retries",
                "Retried attempts (429, 5xx, timeouts), by connector and command kind.",
                [(rate("threadlink_sink_retries_total", "connector, kind"), "{{connector}} {{kind}}")],
                unit="ops",
            ),
            panel(
                "Rate-limit waits",
                "Commands that waited for a rate-limit token of their lane; other lanes went on.",
                [(rate("threadlink_sink_rate_limited_waits_total", "connector"), "{{connector}}")],
                unit="ops",
            ),
            panel(
                "Credential accepted (sink up)",
                "1 while the sink works; 0 while the platform refuses its credential (401/403): intake is paused, "
                "nothing is lost. Alert: ThreadlinkSinkAuthRefused.",
                [("min by (connector) (threadlink_sink_up{" + CONN + "})", "{{connector}}")],
                kind="stat",
            ),
            panel(
                "Commands in flight",
                "Commands polled and not finished yet (bounded by the sink's in-flight limit).",
                [("sum by (connector) (threadlink_sink_commands_in_flight{" + CONN + "})", "{{connector}}")],
            ),
        ],
    ),
    (
        "Dialog speed",
        [
            panel(
                "End-to-end latency (p50, p90, p99)",
                "From the platform's own event time to the sink's acknowledgement of the side effect.",
                [
                    (
                        quantile(q, "threadlink_end_to_end_latency_seconds", "connector"),
                        f"p{round(q * 100)} {{{{connector}}}}",
                    )
                    for q in (0.5, 0.9, 0.99)
                ],
                unit="s",
                width=12,
            ),
            panel(
                "Side effects slower than the SLO (5 s)",
                "Share of side effects over 5 s, from the recording rules; the SLO is 99% within 5 s, so 1% is the "
                "whole error budget. Alerts: ThreadlinkLatencySLOFastBurn, ThreadlinkLatencySLOSlowBurn.",
                [
                    ("threadlink:end_to_end_latency_slow:ratio_rate5m{" + CONN + "}", "5m {{connector}}"),
                    ("threadlink:end_to_end_latency_slow:ratio_rate1h{" + CONN + "}", "1h {{connector}}"),
                ],
                unit="percentunit",
                width=12,
            ),
            panel(
                "Time to first answer (p50, p90) by SLA tier",
                "From a watched thread's first message to the first answer by someone other than its author "
                "(Reach, streams.reach.first_answer).",
                [
                    (
                        quantile(q, "threadlink_reach_time_to_first_answer_seconds", "tier", ENV),
                        f"p{round(q * 100)} {{{{tier}}}}",
                    )
                    for q in (0.5, 0.9)
                ],
                unit="s",
                width=12,
            ),
            panel(
                "Reach: routed, SLA steps taken, answered",
                "Routing rules that fired, first-answer steps that widened a thread's circle, and watched "
                "threads answered.",
                [
                    (
                        rate("threadlink_stream_reach_total", "outcome", ENV + ', outcome=~"routed|step|answered"'),
                        "{{outcome}}",
                    )
                ],
                unit="ops",
                width=12,
            ),
        ],
    ),
    (
        "Dead letters",
        [
            panel(
                "Dead letters by consumer and kind",
                "Records sent to the dead-letter topic. `threadlink dlq list` says why; `threadlink dlq replay` "
                "sends them back once fixed. Alert: ThreadlinkDeadLettersGrowing.",
                [(rate("threadlink_deadletters_total", "consumer, error_kind", ENV), "{{consumer}} {{error_kind}}")],
                unit="ops",
            ),
            panel(
                "Dead letters in the last hour",
                "Letters added over the last hour, by consumer.",
                [("sum by (consumer) (increase(threadlink_deadletters_total{" + ENV + "}[1h]))", "{{consumer}}")],
                kind="stat",
            ),
            panel(
                "Flows: invalid and failed events",
                "Events the flows dead-lettered: not a valid envelope, or the flow failed on it. Alert: "
                "ThreadlinkStreamDeadLettersGrowing.",
                [
                    (
                        rate("threadlink_stream_events_total", "agent, outcome", ENV + ', outcome=~"invalid|failed"'),
                        "{{agent}} {{outcome}}",
                    )
                ],
                unit="ops",
            ),
        ],
    ),
]


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-values"},
        "refresh": 2,  # on time range change: new environments and connectors show up
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "options": [],
        "hide": 0,
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    next_id = 1
    for title, row_panels in ROWS:
        panels.append(
            {
                "type": "row",
                "title": title,
                "collapsed": False,
                "id": next_id,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        x = 0
        for item in row_panels:
            width = item["gridPos"]["w"]
            if x + width > 24:
                x, y = 0, y + 8
            panels.append({**item, "id": next_id, "gridPos": {"h": 8, "w": width, "x": x, "y": y}})
            next_id += 1
            x += width
        y += 8
    return {
        "uid": "threadlink",
        "title": "threadlink",
        "description": "Intake, streams, sinks, dialog speed and dead letters of threadlink (deploy/grafana).",
        "tags": ["threadlink"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"selected": True, "text": "Prometheus", "value": "threadlink-prometheus"},
                    "hide": 0,
                    "options": [],
                    "refresh": 1,
                },
                variable("environment", "Environment", 'label_values(up{job=~"threadlink-.*"}, environment)'),
                variable(
                    "connector",
                    "Connector",
                    'label_values({__name__=~"threadlink_(connector|sink)_.+", environment=~"$environment"}, '
                    "connector)",
                ),
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}", file=sys.stderr)
