"""End-to-end latency of a whole deployment: from a signed Slack webhook accepted (the load
generator has its HTTP 200) to the sink's chat.postMessage of that message's card (the fake
Slack has it), at fixed offered rates.

The deployment is the real one: `threadlink connectors run --only slack` (the events webhook
and the Slack sink) and `threadlink streams run`, as child processes, with the fake Slack in a
process of its own (bench/fakeslack.py). Tickets are preloaded on the records topic, so no
mention waits for a fetch from Jira. Every message mentions one ticket not yet carded in its
thread, so each gives one card. The sink's rate limits are set out of the way (Slack's own
would allow one card per channel per second): the pipeline is measured, not Slack's limit.

Each rate is offered open-loop for `seconds`, MAX_MESSAGES at most (request i is sent at
start + i / rate, whatever the answers before it). Cards still missing `DRAIN_S` after the
offer ended count as slower than any delivered one: a percentile that falls among them is
reported as not reached. A rate that left such a backlog gets no successor on the same
deployment: the next rate starts on a fresh one. When no rate was sustained, one more is
probed near the capacity seen.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx

from bench import kafkaio, sinks, workload
from bench.budget import Deadline, StepTimeout
from bench.context import RunContext
from bench.fakeslack import SIGNING_SECRET, FakeSlackProcess
from bench.linkflow import Deployment as StreamsDeployment
from bench.procs import Child
from sandbox.demo import free_port
from sandbox.slack_api import sign

CHANNELS = 200
TICKETS = 2000
"""Tickets in the table: each is carded in few threads (a record keeps its cards in its state)."""
WARMUP = 20
"""Messages sent (and their cards awaited) before each measured rate: connections, consumer
groups and caches are in place."""
DRAIN_S = 10.0
MAX_MESSAGES = 10_000
"""Messages of one rate at most (5,000/s is offered for 2 s): the webhook takes a few hundred a
second on this machine, and what it took must be carded before the next deployment."""
ANSWER_WITHIN_S = 5.0
"""Webhook requests not answered this long after the last one was due are given up."""
MAX_IN_FLIGHT = 256
"""Requests at once: the connectors' `http.max_concurrent_requests` (beyond it they answer 503)."""
PERCENTILES = (50, 95, 99)


@dataclass
class Deployment:
    """Streams worker, connectors process and fake Slack of one namespace."""

    streams: StreamsDeployment
    slack: FakeSlackProcess
    connectors: Child
    events_url: str
    next_index: int = 0
    """Messages sent so far (each (thread, ticket) pair is used once)."""

    def stop(self) -> None:
        self.connectors.stop()
        self.streams.stop()
        self.slack.child.stop()


def start(ctx: RunContext, part: str, deadline: Deadline) -> Deployment:
    slack = FakeSlackProcess.start(ctx, part, CHANNELS)
    streams = StreamsDeployment(ctx, part)
    streams.create_topics()
    streams.produce_tickets(TICKETS, deadline)
    streams.start()
    port = free_port(18970)
    config = sinks.write_config(ctx, part, slack, sinks.UNLIMITED, port=port, file="connectors.yaml")
    connectors = ctx.child(
        f"{part}-connectors", ["-m", "threadlink", "--config", str(config), "connectors", "run", "--only", "slack"]
    )
    connectors.start()
    streams.wait_loaded(TICKETS, deadline)
    url = f"http://127.0.0.1:{port}"
    while True:
        connectors.check_alive()
        deadline.check("waiting for the connectors' /healthz")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return Deployment(streams, slack, connectors, f"{url}/webhooks/slack/events")


# --------------------------------------------------------------------------- the load


@dataclass
class Message:
    index: int
    thread: Any
    ticket_key: str
    body: bytes


def messages(first: int, count: int, threads: int) -> list[Message]:
    """Messages `first`..`first + count - 1`: message i goes to thread i % threads and mentions
    a ticket that thread has not had yet."""
    out = []
    for index in range(first, first + count):
        thread_no, round_no = index % threads, index // threads
        thread = workload.slack_thread(thread_no % CHANNELS, thread_no // CHANNELS)
        key = workload.ticket_key((round_no + thread_no * 7) % TICKETS)
        text = f"Customers see it again, is this {key}?"
        out.append(Message(index, thread, key, workload.slack_event_body(thread, index, text)))
    return out


@dataclass
class Offered:
    sent_at: dict[int, float] = field(default_factory=dict)
    accepted_at: dict[int, float] = field(default_factory=dict)
    """Wall-clock time of each HTTP 200, by message index."""
    refused: Counter[str] = field(default_factory=Counter)


async def offer(url: str, load: list[Message], rate: float, *, answer_within_s: float) -> Offered:
    """Send `load` open-loop at `rate` messages/s, each signed as Slack signs it, at most
    MAX_IN_FLIGHT at once (a request due while that many wait goes out as soon as one is
    answered: the sent rate says when the server held the offer back). Requests still
    unanswered `answer_within_s` after the last was due are given up."""
    result = Offered()
    in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
    timeout = aiohttp.ClientTimeout(total=30)

    async def one(session: aiohttp.ClientSession, message: Message) -> None:
        async with in_flight:
            timestamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "X-Slack-Request-Timestamp": timestamp,
                "X-Slack-Signature": sign(SIGNING_SECRET, timestamp, message.body),
            }
            result.sent_at[message.index] = time.time()
            try:
                async with session.post(url, data=message.body, headers=headers) as response:
                    await response.read()
                    if response.status == 200:
                        result.accepted_at[message.index] = time.time()
                    else:
                        result.refused[str(response.status)] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                result.refused[type(exc).__name__] += 1

    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = []
        started = time.monotonic()
        for n, message in enumerate(load):
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, message)))
        _done, late = await asyncio.wait(tasks, timeout=answer_within_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        if late:
            result.refused["not answered in time"] += len(late)
    return result


def card_times(slack: FakeSlackProcess) -> dict[tuple[str, str, str], float]:
    """(channel, thread_ts, ticket key) -> when its card reached the fake (the first, if twice)."""
    cards: dict[tuple[str, str, str], float] = {}
    for arrival, channel, thread_ts, text in slack.posts():
        key = (channel, thread_ts or "", text.split(":", 1)[0])
        cards[key] = min(arrival, cards.get(key, arrival))
    return cards


def _card_key(message: Message) -> tuple[str, str, str]:
    return (message.thread.channel, message.thread.thread_id, message.ticket_key)


def wait_cards(
    deployment: Deployment, load: list[Message], accepted: set[int], deadline: Deadline, *, drain_s: float, label: str
) -> bool:
    """Until every accepted message's card is at the fake (True), or `drain_s` passed (False)."""
    wanted = {_card_key(m) for m in load if m.index in accepted}
    until = time.monotonic() + drain_s
    while True:
        have = int(deployment.slack.stats()["posts"])
        if have >= len(wanted) and wanted <= set(card_times(deployment.slack)):
            return True
        if time.monotonic() >= until:
            return False
        deployment.connectors.check_alive()
        assert deployment.streams.worker is not None
        deployment.streams.worker.check_alive()
        deadline.check(f"{label}: {have:,} cards")
        deadline.budget.tick(f"{label}: {have:,} cards so far")
        time.sleep(0.5)


def percentile(sorted_values: list[float], total: int, p: float) -> float | None:
    """The p-th percentile of `total` values of which `sorted_values` are known (the rest are
    larger than any of them); None when it falls among the unknown."""
    if not total:
        return None
    rank = max(1, math.ceil(p / 100 * total))
    return sorted_values[rank - 1] if rank <= len(sorted_values) else None


def run_rate(
    deployment: Deployment, rate: int, seconds: float, threads: int, deadline: Deadline, budget: Any
) -> tuple[dict[str, Any], bool]:
    """One offered rate on a running deployment; (its figure, whether it drained)."""
    warm = messages(deployment.next_index, WARMUP, threads)
    deployment.next_index += WARMUP
    warmed = asyncio.run(offer(deployment.events_url, warm, rate=min(rate, 50), answer_within_s=30))
    if not wait_cards(deployment, warm, set(warmed.accepted_at), deadline, drain_s=60, label=f"{rate}/s warm-up"):
        raise RuntimeError("the warm-up messages got no cards within 60 s")
    count = max(1, min(round(rate * seconds), MAX_MESSAGES))
    load = messages(deployment.next_index, count, threads)
    deployment.next_index += count
    budget.say(f"  offering {count:,} messages at {rate:,}/s")
    offered = asyncio.run(offer(deployment.events_url, load, rate, answer_within_s=ANSWER_WITHIN_S))
    accepted = set(offered.accepted_at)
    drained = wait_cards(deployment, load, accepted, deadline, drain_s=DRAIN_S, label=f"{rate}/s")
    cards = card_times(deployment.slack)
    latencies = sorted(
        cards[_card_key(m)] - offered.accepted_at[m.index]
        for m in load
        if m.index in accepted and _card_key(m) in cards
    )
    acks = sorted(offered.accepted_at[i] - offered.sent_at[i] for i in accepted)
    streams_s, sink_s = _stages(deployment, load, offered, cards)
    delivered = [cards[_card_key(m)] for m in load if m.index in accepted and _card_key(m) in cards]
    accepted_times = sorted(offered.accepted_at.values())
    figure: dict[str, Any] = {
        "offered_per_s": rate,
        "messages": count,
        "sent_per_s": _rate(sorted(offered.sent_at.values())),
        "accepted": len(accepted),
        "refused": dict(offered.refused),
        "accepted_per_s": _rate(accepted_times),
        "cards": len(latencies),
        "cards_per_s": _rate(sorted(delivered)),
        "drained": drained,
        "drain_s": DRAIN_S,
        "ack_ms": {f"p{p}": _ms(percentile(acks, len(acks), p)) for p in PERCENTILES},
        "latency_ms": {f"p{p}": _ms(percentile(latencies, len(accepted), p)) for p in PERCENTILES},
        "latency_ms_max": _ms(latencies[-1]) if latencies and len(latencies) == len(accepted) else None,
        # Where the time goes, for the cards that came: webhook accepted -> the streams' PostCard
        # on the commands topic (broker time) -> the sink's post at the fake.
        "to_command_ms": {f"p{p}": _ms(percentile(streams_s, len(streams_s), p)) for p in PERCENTILES},
        "command_to_post_ms": {f"p{p}": _ms(percentile(sink_s, len(sink_s), p)) for p in PERCENTILES},
    }
    return figure, drained


def _stages(
    deployment: Deployment, load: list[Message], offered: Offered, cards: dict[tuple[str, str, str], float]
) -> tuple[list[float], list[float]]:
    """Sorted (accepted -> command, command -> post) seconds of the messages whose card came."""
    by_ts = {workload.slack_event_ts(m.index): m for m in load}
    streams = deployment.streams
    topic = streams.cards_topic
    emitted: dict[int, float] = {}
    for output in kafkaio.read_outputs(streams.ctx.bootstrap, topic, streams.ctx.admin.partitions(topic)):
        message = by_ts.get(workload.card_reply_to(output.value) or "")
        if message is not None:
            emitted.setdefault(message.index, output.timestamp_ms / 1000)
    to_command, to_post = [], []
    for message in load:
        accepted = offered.accepted_at.get(message.index)
        at = emitted.get(message.index)
        posted = cards.get(_card_key(message))
        if accepted is not None and at is not None and posted is not None:
            to_command.append(at - accepted)
            to_post.append(posted - at)
    return sorted(to_command), sorted(to_post)


def _rate(times: list[float]) -> float | None:
    return round((len(times) - 1) / (times[-1] - times[0]), 1) if len(times) > 1 and times[-1] > times[0] else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def measure(ctx: RunContext, rates: list[int], seconds: float, threads: int) -> dict[str, Any]:
    """Each rate in turn, each (with the start of its deployment) within the step limit. After
    the first rate that leaves a backlog, when none was sustained before it, one more rate near
    the capacity seen (70 % of its cards/s) goes next, on the fresh deployment the following rate
    would need anyway: so there is a latency at a rate the machine sustains."""
    figures: dict[str, Any] = {}
    deployment: Deployment | None = None
    starts = 0
    todo = [(rate, False) for rate in rates]
    probed = False
    try:
        while todo:
            rate, probe = todo.pop(0)
            deadline = ctx.budget.step(ctx.step_limit_s)
            try:
                if deployment is None:
                    starts += 1
                    ctx.budget.say(f"  starting a deployment (streams, connectors, fake Slack) for {rate:,}/s")
                    deployment = start(ctx, f"latency-{starts}", deadline)
                figure, drained = run_rate(deployment, rate, seconds, threads, deadline, ctx.budget)
            except StepTimeout as exc:
                figures[str(rate)] = {"offered_per_s": rate, "not_measured": str(exc)}
                drained = False
            else:
                figure |= {"deployment": starts, "near_capacity_probe": probe}
                figures[str(rate)] = figure
                ctx.budget.say(
                    f"  {rate:,}/s offered: {figure['accepted_per_s']} accepted/s, {figure['cards_per_s']} cards/s, "
                    f"latency p50/p95/p99 {figure['latency_ms']['p50']}/{figure['latency_ms']['p95']}/"
                    f"{figure['latency_ms']['p99']} ms"
                )
            if not drained:
                if deployment is not None:
                    deployment.stop()
                deployment = None
                probe_rate = None if probed else _near_capacity(figures)
                if probe_rate is not None and str(probe_rate) not in figures:
                    todo.insert(0, (probe_rate, True))
                    probed = True
    finally:
        if deployment is not None:
            deployment.stop()
    return {"threads": threads, "channels": CHANNELS, "tickets": TICKETS, "seconds_per_rate": seconds, "rates": figures}


def _near_capacity(figures: dict[str, Any]) -> int | None:
    """A rate to probe when no rate was sustained: 70 % of the fewest cards/s under a backlog."""
    measured = [f for f in figures.values() if "not_measured" not in f]
    if not measured or any(f["drained"] for f in measured):
        return None
    capacity = min((f["cards_per_s"] or 0.0) for f in measured)
    return max(5, int(round(capacity * 0.7, -1) or round(capacity * 0.7)))
