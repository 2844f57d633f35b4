"""threadlink's link flow, driven only through its public interfaces: a config file, the real
`threadlink streams run` worker as a child process, the topic catalog (schemas/topics.py) and
the schemas/ models (through bench/workload.py).

Topics are created from the catalog as `threadlink topics apply` would, with two bench-only
changes: the messages topic has the bench's input partition count (4, like every input of the
bench), and the commands topics stamp records with the broker's append time (bench/measure.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from bench import kafkaio, workload
from bench.budget import Deadline
from bench.context import RunContext
from bench.measure import throughput, wait_for_outputs
from bench.procs import Child
from schemas.topics import TopicNames, catalog


class Deployment:
    """One namespace with its topics, its config file and (while running) its streams worker."""

    def __init__(self, ctx: RunContext, part: str) -> None:
        self.ctx = ctx
        self.namespace = ctx.namespace(part)
        self.names = TopicNames(self.namespace)
        self.app_id = f"{self.namespace}-streams"
        self.cards_topic = self.names.commands(workload.PLATFORM)
        self.config = self._write_config(ctx.run_dir / part / "threadlink.yaml")
        self.worker: Child | None = None
        self.starts = 0

    def _write_config(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc: dict[str, Any] = {
            "kafka": {"bootstrap_servers": self.ctx.bootstrap, "namespace": self.namespace, "client_id": "bench"},
            "streams": {"app_id": self.app_id, "web_port": 0, "state_dir": str(path.parent / "streams")},
        }
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def create_topics(self) -> None:
        topics: dict[str, tuple[int, dict[str, str]]] = {}
        for spec in catalog(self.names, [workload.PLATFORM, workload.MENTION_SYSTEM]):
            partitions, configs = spec.partitions, spec.configs(1)
            if spec.name in (self.names.commands(workload.PLATFORM), self.names.commands(workload.MENTION_SYSTEM)):
                configs = {**configs, **kafkaio.LOG_APPEND_TIME}
            topics[spec.name] = (partitions, configs)
        self.ctx.admin.create_topics(topics)

    def start(self) -> Child:
        self.starts += 1
        self.worker = self.ctx.child(
            f"{self.namespace.removeprefix(self.ctx.prefix + '-')}-worker{self.starts}",
            ["-m", "threadlink", "--config", str(self.config), "streams", "run"],
        )
        self.worker.start()
        return self.worker

    def stop(self) -> float:
        took = self.worker.stop() if self.worker else 0.0
        self.worker = None
        return took

    # -- what the bench watches ------------------------------------------------------------

    def changelogs(self) -> list[str]:
        """The worker's table changelogs (Faust names them `<app id>-<table>-changelog`)."""
        return [t for t in self.ctx.admin.topics(f"{self.app_id}-") if t.endswith("-changelog")]

    def table_entries(self) -> int:
        """Writes to the worker's tables so far: each ticket taken in is one."""
        return sum(self.ctx.admin.end_offsets(self.changelogs()).values())

    def cards(self) -> int:
        return self.ctx.admin.end_offsets([self.cards_topic])[self.cards_topic]

    def produce_tickets(self, count: int, deadline: Deadline) -> kafkaio.Produced:
        return kafkaio.produce(
            self.ctx.bootstrap,
            self.names.records,
            workload.tickets(count),
            deadline=deadline,
            progress=lambda n: self.ctx.budget.tick(f"tickets produced: {n:,}/{count:,}"),
        )

    def send_sentinel(self, tag: str, deadline: Deadline) -> None:
        message = workload.sentinel(tag)
        kafkaio.produce(self.ctx.bootstrap, self.names.social_events, [(message.key, message.value)], deadline=deadline)

    def wait_loaded(self, count: int, deadline: Deadline) -> tuple[float | None, float]:
        """Until the tables hold `count` entries; returns (first entry, all entries) as monotonic times."""
        assert self.worker is not None
        first: float | None = None
        while True:
            entries = self.table_entries()
            now = time.monotonic()
            if entries and first is None:
                first = now
            if entries >= count:
                return first, now
            self.worker.check_alive()
            deadline.check(f"loading the table: {entries:,} of {count:,} records")
            self.ctx.budget.tick(f"table: {entries:,}/{count:,} records")
            time.sleep(0.25)

    def wait_card(self, before: int, deadline: Deadline, doing: str) -> float:
        """Until a card more than `before` is on the commands topic; returns when (monotonic)."""
        assert self.worker is not None
        while self.cards() <= before:
            self.worker.check_alive()
            deadline.check(doing)
            self.ctx.budget.tick(doing)
            time.sleep(0.1)
        return time.monotonic()


def load(ctx: RunContext, part: str, tickets: int) -> Deployment:
    """A deployment whose running worker has `tickets` tickets in its table."""
    deadline = ctx.budget.step(ctx.step_limit_s)
    deployment = Deployment(ctx, part)
    deployment.create_topics()
    deployment.produce_tickets(tickets, deadline)
    deployment.start()
    deployment.wait_loaded(tickets, deadline)
    return deployment


def measure(ctx: RunContext, deployment: Deployment, messages: list[workload.Message]) -> dict[str, Any]:
    """Messages produced to the running worker; cards counted on `<ns>.commands.slack`."""
    assert deployment.worker is not None
    deadline = ctx.budget.step(ctx.step_limit_s)
    pairs = {(m.thread_id, record) for m in messages for record in m.known}  # one card per thread and record
    base = deployment.cards()
    produced = kafkaio.produce(
        ctx.bootstrap, deployment.names.social_events, ((m.key, m.value) for m in messages), deadline=deadline
    )
    waited = wait_for_outputs(
        ctx.admin,
        deployment.cards_topic,
        expected=len(pairs),
        base=base,
        measure_s=ctx.measure_s,
        deadline=deadline,
        child=deployment.worker,
        budget=ctx.budget,
        label="link flow",
    )
    rss = deployment.worker.rss()
    deployment.stop()
    outputs = kafkaio.read_outputs(ctx.bootstrap, deployment.cards_topic, ctx.admin.partitions(deployment.cards_topic))
    result = throughput(outputs, workload.card_reply_to, messages, produced, expected=len(pairs), ended=waited.ended)
    return {**result.as_dict(), "rss_bytes": rss}
