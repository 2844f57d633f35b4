"""Prometheus metrics of the connector runtime. Labels are bounded: connector names come
from the config, outcomes and kinds from fixed sets."""

from prometheus_client import Counter, Gauge, Histogram

WEBHOOK_REQUESTS = Counter(
    "threadlink_connector_webhook_requests_total",
    "Webhook requests by outcome (accepted, duplicate, ignored, refused, unauthorized, bad_request, too_large, "
    "timeout, overloaded, unavailable, dead_lettered, client_gone).",
    ["connector", "outcome"],
)
EVENTS_PUBLISHED = Counter(
    "threadlink_connector_events_published_total",
    "Events acknowledged by the broker, by connector and topic.",
    ["connector", "topic"],
)
PUBLISH_SECONDS = Histogram(
    "threadlink_connector_publish_duration_seconds",
    "From send to the broker's acknowledgement (acks=all).",
    ["connector"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
SINK_COMMANDS = Counter(
    "threadlink_sink_commands_total",
    "Commands handled by sinks, by outcome (done, duplicate, superseded, dead_lettered).",
    ["connector", "kind", "outcome"],
)
SINK_SECONDS = Histogram(
    "threadlink_sink_command_duration_seconds",
    "Time to carry out one command, retries included.",
    ["connector", "kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SINK_RETRIES = Counter("threadlink_sink_retries_total", "Retried attempts of sink commands.", ["connector", "kind"])
DEAD_LETTERS = Counter(
    "threadlink_deadletters_total", "Records sent to the dead-letter topic.", ["consumer", "error_kind"]
)
END_TO_END_SECONDS = Histogram(
    "threadlink_end_to_end_latency_seconds",
    "From the platform event's time to the sink's side effect being done.",
    ["connector", "kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
LEDGER_SIZE = Gauge("threadlink_sink_ledger_entries", "Done commands the sink remembers.", ["connector"])
POLLS = Counter(
    "threadlink_connector_polls_total",
    "Polls of polling sources, by outcome (done, retried, failed).",
    ["connector", "outcome"],
)
STREAM_BATCHES = Counter(
    "threadlink_connector_stream_batches_total",
    "Batches the batched publisher of stream sources flushed.",
    ["connector"],
)
STREAM_RECONNECTS = Counter(
    "threadlink_connector_stream_reconnects_total",
    "Reconnects of stream sources after a lost connection.",
    ["connector"],
)
SINK_UP = Gauge(
    "threadlink_sink_up",
    "1 while the sink works; 0 while the platform refuses its credential (intake paused, nothing lost).",
    ["connector"],
)
SINK_IN_FLIGHT = Gauge(
    "threadlink_sink_commands_in_flight", "Commands polled and not yet finished (bounded).", ["connector"]
)
SINK_LAG = Gauge(
    "threadlink_sink_consumer_lag_records",
    "Commands on the sink's partitions not done yet: from the oldest unfinished one to the end offset.",
    ["connector"],
)
SINK_RATE_WAITS = Counter(
    "threadlink_sink_rate_limited_waits_total",
    "Commands that waited for a rate-limit token (their lane was busy); other lanes went on.",
    ["connector"],
)
API_CALLS = Counter(
    "threadlink_connector_api_requests_total",
    "Calls to the platforms' HTTP APIs (the Slack Web API, Jira's REST API), by platform, API method and HTTP "
    "status (transport_error: no answer came). Counted where every answer is classified "
    "(connectors.errors.classify_response).",
    ["platform", "method", "status"],
)
