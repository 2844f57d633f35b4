"""The Slack sink on its own: the real `threadlink connectors run --only slack --no-webhooks`
process (config from a file) against the fake Slack in a process of its own
(bench/fakeslack.py), with PostCard commands preloaded in its commands topic.

- throughput: rate limits set out of the way, commands spread over 200 channels (keys: thread
  ids); commands/s from the first to the last outcome (broker time) and from the fake's arrival
  times;
- Slack's per-channel limit on (1 message per channel per second in the sink and in the fake):
  one hot channel with many commands, the others with a few; what the fake refused (429), the
  busiest second of any channel, and when the other channels were done compared with the hot one;
- restart on a big ledger: the sink starts on a ledger of N done entries; how long until it
  serves (its first new command is posted) and its RSS.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from bench import fakeslack, kafkaio, workload
from bench.budget import Deadline
from bench.context import RunContext
from bench.fakeslack import FakeSlackProcess
from bench.measure import wait_for_outputs
from bench.procs import Child
from schemas import events
from schemas.envelope import Envelope, utcnow
from schemas.ledger import LedgerEntry
from schemas.outcomes import Effect
from schemas.topics import SINK_PARTITIONS, TopicNames, catalog

CHANNELS = 200
#: Limits no run of the bench reaches: the sink's own speed is measured.
UNLIMITED = {"messages_per_channel_per_s": 1_000_000.0, "channel_burst": 1_000_000}
#: Slack's "about one message per second per channel", with no burst: the fake refuses a second
#: post within one second.
PER_CHANNEL = {"messages_per_channel_per_s": 1.0, "channel_burst": 1}
SETTLE_S = 3.0


class SinkDeployment:
    """One namespace with the catalog's topics for a Slack sink, its config file and its process."""

    def __init__(self, ctx: RunContext, part: str, slack: FakeSlackProcess, rate_limits: dict[str, Any]) -> None:
        self.ctx, self.part, self.slack = ctx, part, slack
        self.namespace = ctx.namespace(part)
        self.names = TopicNames(self.namespace)
        self.commands_topic = self.names.commands(workload.PLATFORM)
        self.config = write_config(ctx, part, slack, rate_limits)
        self.sink: Child | None = None
        self.started_wall = 0.0

    def create_topics(self) -> None:
        topics: dict[str, tuple[int, dict[str, str]]] = {}
        for spec in catalog(self.names, [workload.PLATFORM]):
            configs = spec.configs(1)
            if spec.name == self.names.outcomes:
                configs = {**configs, **kafkaio.LOG_APPEND_TIME}
            topics[spec.name] = (spec.partitions, configs)
        self.ctx.admin.create_topics(topics)

    def start(self) -> Child:
        self.sink = self.ctx.child(
            f"{self.part}-sink",
            ["-m", "threadlink", "--config", str(self.config), "connectors", "run", "--only", "slack", "--no-webhooks"],
        )
        self.started_wall = time.time()
        self.sink.start()
        return self.sink

    def outcomes(self) -> list[kafkaio.Output]:
        topic = self.names.outcomes
        return kafkaio.read_outputs(self.ctx.bootstrap, topic, self.ctx.admin.partitions(topic))

    def wait(self, expected: int, deadline: Deadline, label: str) -> str:
        assert self.sink is not None
        waited = wait_for_outputs(
            self.ctx.admin,
            self.names.outcomes,
            expected=expected,
            base=0,
            measure_s=self.ctx.measure_s,
            deadline=deadline,
            child=self.sink,
            budget=self.ctx.budget,
            label=label,
        )
        return waited.ended


def write_config(
    ctx: RunContext,
    part: str,
    slack: FakeSlackProcess,
    rate_limits: dict[str, Any],
    *,
    port: int = 0,
    file: str = "threadlink.yaml",
) -> Path:
    """The deployment's config file (`connectors.slack` pointed at the fake; webhooks on `port`)."""
    path = ctx.run_dir / part / file
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "kafka": {"bootstrap_servers": ctx.bootstrap, "namespace": ctx.namespace(part), "client_id": "bench"},
        "http": {"host": "127.0.0.1", "port": port},
        "streams": {
            "app_id": f"{ctx.namespace(part)}-streams",
            "web_port": 0,
            "state_dir": str(path.parent / "streams"),
        },
        "connectors": {
            "slack": {
                "signing_secret": fakeslack.SIGNING_SECRET,
                "bot_token": fakeslack.BOT_TOKEN,
                "api_base_url": slack.api_url,
                "bot_user_id": fakeslack.BOT_USER_ID,
                "bot_id": fakeslack.BOT_ID,
                "workspace_url": fakeslack.WORKSPACE_URL,
                "rate_limits": rate_limits,
            },
            # Named by the mention pattern; its sink is not part of what is measured.
            "jira": {
                "enabled": False,
                "base_url": "http://127.0.0.1:9",
                "email": "bench@example.com",
                "api_token": "bench-unused",
                "webhook_secret": "bench-unused",
            },
        },
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _statuses(outputs: list[kafkaio.Output]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for output in outputs:
        data = json.loads(output.value)["data"]
        counts["redelivered" if data.get("redelivered") else data["status"]] += 1
    return dict(counts)


def _rate(count: int, first: float | None, last: float | None) -> float | None:
    return round((count - 1) / (last - first), 1) if first is not None and last is not None and last > first else None


def _commands(spread: dict[int, int], threads_per_channel: int) -> Iterator[tuple[bytes, bytes]]:
    """`spread[c]` PostCards into channel c, round robin over its threads (one ticket each)."""
    ticket = 0
    for channel, count in spread.items():
        for n in range(count):
            yield workload.post_card(workload.slack_thread(channel, n % threads_per_channel), ticket)
            ticket += 1


def _interleaved(spread: dict[int, int], threads_per_channel: int) -> list[tuple[bytes, bytes]]:
    """The commands of `_commands`, channels interleaved (as a flow emits them for many threads)."""
    by_channel: dict[bytes, list[tuple[bytes, bytes]]] = defaultdict(list)
    for key, value in _commands(spread, threads_per_channel):
        by_channel[key.rsplit(b":", 1)[0]].append((key, value))
    queues = list(by_channel.values())
    out: list[tuple[bytes, bytes]] = []
    while queues:
        out += [queue.pop(0) for queue in queues]
        queues = [queue for queue in queues if queue]
    return out


def _run(
    ctx: RunContext,
    part: str,
    commands: list[tuple[bytes, bytes]],
    *,
    rate_limits: dict[str, Any],
    channel_limit: int | None,
) -> tuple[dict[str, Any], list[tuple[float, str, str | None, str]]]:
    """Preload, start the fake and the sink, wait for every outcome; the raw material of a figure."""
    deadline = ctx.budget.step(ctx.step_limit_s)
    slack = FakeSlackProcess.start(ctx, part, CHANNELS, channel_limit=channel_limit)
    deployment = SinkDeployment(ctx, part, slack, rate_limits)
    deployment.create_topics()
    kafkaio.produce(ctx.bootstrap, deployment.commands_topic, commands, deadline=deadline)
    sink = deployment.start()
    ended = deployment.wait(len(commands), deadline, part)
    peak = sink.peak_rss()
    stats = slack.stats()
    posts = slack.posts()
    outputs = deployment.outcomes()
    first = min((o.timestamp_ms for o in outputs), default=None)
    last = max((o.timestamp_ms for o in outputs), default=None)
    arrivals = [p[0] for p in posts]
    rate = _rate(len(outputs), first / 1000 if first else None, last / 1000 if last else None)
    cpu = None
    if first is not None and last is not None:
        to_monotonic = time.monotonic() - time.time()
        cpu = sink.cpu_used(first / 1000 + to_monotonic, last / 1000 + to_monotonic)
    figure: dict[str, Any] = {
        "commands": len(commands),
        "outcomes": len(outputs),
        "outcome_statuses": _statuses(outputs),
        "ended": ended,
        "window_s": round((last - first) / 1000, 3) if first is not None and last is not None else None,
        "commands_per_s": rate,
        # What the rate is on this machine, whatever else runs on it: CPU per command, and how
        # much of a core the sink had.
        "sink_cpu_ms_per_command": round(cpu[0] / cpu[1] / rate * 1000, 2) if cpu and rate else None,
        "sink_cores_used": round(cpu[0] / cpu[1], 2) if cpu else None,
        "posts": stats["posts"],
        "posts_per_s_at_fake": _rate(len(arrivals), min(arrivals, default=None), max(arrivals, default=None)),
        "rate_limited_429": stats["rate_limited"],
        "peak_per_channel": max(stats["peak_per_channel"].values(), default=None),
        "startup_s": round(first / 1000 - deployment.started_wall, 2) if first else None,
        "peak_rss_bytes": peak,
    }
    return figure, posts


def throughput(ctx: RunContext, commands: int) -> dict[str, Any]:
    """Commands/s of one sink process with the rate limits out of the way."""
    per_channel = -(-commands // CHANNELS)
    spread = {c: min(per_channel, max(0, commands - c * per_channel)) for c in range(CHANNELS)}
    load = _interleaved({c: n for c, n in spread.items() if n}, threads_per_channel=5)
    figure, _posts = _run(ctx, "sink-throughput", load, rate_limits=UNLIMITED, channel_limit=None)
    figure.pop("peak_per_channel")  # the fake counts it only with a limit
    return {"channels": CHANNELS, "threads": CHANNELS * 5, **figure}


def per_channel_limit(ctx: RunContext, hot_commands: int, other_commands: int) -> dict[str, Any]:
    """Slack's per-channel limit honoured in the sink; one hot channel does not stall the others."""
    spread = {0: hot_commands, **{c: other_commands for c in range(1, CHANNELS)}}
    load = _interleaved(spread, threads_per_channel=3)
    figure, posts = _run(ctx, "sink-per-channel", load, rate_limits=PER_CHANNEL, channel_limit=1)
    peak = figure.pop("peak_per_channel")
    hot = workload.slack_channel(0)
    first = min((p[0] for p in posts), default=0.0)
    done_at: dict[str, float] = {}
    for arrival, channel, _thread, _text in posts:
        done_at[channel] = max(done_at.get(channel, 0.0), arrival - first)
    others = [at for channel, at in done_at.items() if channel != hot]
    others_done = max(others, default=None)
    busy = [p for p in posts if others_done is not None and p[0] - first <= others_done]
    return {
        "channels": CHANNELS,
        "hot_channel_commands": hot_commands,
        "other_channel_commands": other_commands,
        **figure,
        # The fake's count: at each post it accepted, the posts of that channel in the second before.
        "max_posts_in_1s_any_channel": peak,
        "commands_per_s_all_channels_busy": round(len(busy) / others_done, 1) if others_done else None,
        "others_done_s_median": round(statistics.median(others), 2) if others else None,
        "others_done_s_max": round(others_done, 2) if others_done is not None else None,
        "hot_done_s": round(done_at[hot], 2) if hot in done_at else None,
    }


# --------------------------------------------------------------------------- a big ledger


def ledger_entries(count: int) -> Iterator[tuple[bytes, bytes]]:
    """`count` done entries of the Slack sink, keyed by command id. One template serialized
    once: the ledger's volume is measured, not pydantic's speed."""
    placeholder = "post_card-" + "0" * 32
    entry = LedgerEntry(
        command_id=placeholder, target=workload.PLATFORM, at=utcnow(), effect=Effect(message_id="1764000000.000100")
    )
    template = Envelope.wrap(entry, type=events.LEDGER_DONE, source_system=workload.PLATFORM).to_bytes()
    for n in range(count):
        command_id = f"post_card-{n:032x}".encode()
        yield command_id, template.replace(placeholder.encode(), command_id)


def ledger_restart(ctx: RunContext, entries: int) -> dict[str, Any]:
    """A sink started on a ledger of `entries`: when it serves, and its RSS."""
    part = "sink-ledger"
    deadline = ctx.budget.step(ctx.step_limit_s)
    slack = FakeSlackProcess.start(ctx, part, CHANNELS)
    deployment = SinkDeployment(ctx, part, slack, UNLIMITED)
    deployment.create_topics()
    ctx.budget.say(f"  writing {entries:,} ledger entries")
    # All in the ledger partition of one thread's commands (the runtime writes an entry where its
    # command is): a command of that thread then waits for all of them.
    thread = workload.slack_thread(0, 0)
    key, new = workload.post_card(thread, 1)
    written = kafkaio.produce(
        ctx.bootstrap,
        deployment.names.ledger,
        ledger_entries(entries),
        deadline=deadline,
        progress=lambda n: ctx.budget.tick(f"ledger entries written: {n:,}/{entries:,}"),
        partition=kafkaio.partition_of(key, SINK_PARTITIONS),
    )
    # A command the ledger has as done (redelivered: it must not be posted again), then a new one
    # on the same key: its post means the sink serves.
    old = new.replace(json.loads(new)["data"]["command_id"].encode(), b"post_card-" + f"{entries // 2:032x}".encode())
    kafkaio.produce(ctx.bootstrap, deployment.commands_topic, [(key, old), (key, new)], deadline=deadline)
    deadline = ctx.budget.step(ctx.step_limit_s)  # writing the ledger had its own
    sink = deployment.start()
    ended = slack.wait_posts(1, deadline, stall_s=deadline.remaining(), label="sink on a big ledger", watch=sink)
    posts = slack.posts()
    served = posts[0][0] - deployment.started_wall if posts else None
    served_mono = time.monotonic()
    deployment.wait(2, deadline, "sink on a big ledger: outcomes")
    time.sleep(SETTLE_S)
    sink.check_alive()
    statuses = _statuses(deployment.outcomes())
    return {
        "ledger_entries": entries,
        "ledger_write_s": round(written.seconds, 1),
        "ended": ended,
        "serve_s": round(served, 2) if served is not None else None,
        "posts": len(posts),
        "outcome_statuses": statuses,
        "peak_rss_bytes": sink.peak_rss(sink.started_at, served_mono),
        "settled_rss_bytes": sink.rss(),
    }
