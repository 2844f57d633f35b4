"""The Faust app: built from the deployment settings, with every flow registered on it.

threadlink streams run        # a worker (what deploy/ runs); run several to share the partitions
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from schemas.topics import STREAM_PARTITIONS
from streams import agents, faust_fixes, lag, queries, reach_timer, subscriptions, table_sizes
from streams import tables as table_defs
from streams import topics as topic_defs
from streams.flows.link import LinkFlow
from streams.knowledge import ArticleIndex, ArticleReader
from streams.readers import TopicReader
from streams.subscriptions import Subscriptions
from threadlink.config import Settings


@dataclass
class StreamsContext:
    """What flows get: the app, its topics and tables, the settings."""

    app: faust.App
    settings: Settings
    topics: topic_defs.StreamTopics
    tables: table_defs.StreamTables
    articles: ArticleIndex = field(default_factory=ArticleIndex)
    article_reader: ArticleReader | None = None
    """Started by `read_articles()` before the worker, so a question finds the articles that exist."""
    subscriptions: Subscriptions = field(default_factory=Subscriptions)
    subscription_reader: TopicReader | None = None
    flow: LinkFlow | None = None

    def read_articles(self, wait_s: float) -> bool:
        """Start reading the articles (Know) and the subscriptions (Reach); wait up to `wait_s`
        for those published before. Returns whether they were all read in time (the worker goes
        on either way)."""
        readers: list[TopicReader] = []
        if self.subscription_reader is not None:
            readers.append(self.subscription_reader)
        if self.article_reader is not None and self.settings.streams.know.enabled:
            readers.append(self.article_reader)
        for reader in readers:
            reader.start()
        deadline = time.monotonic() + wait_s
        return all(reader.caught_up.wait(max(0.0, deadline - time.monotonic())) for reader in readers)


def create_app(settings: Settings) -> StreamsContext:
    kafka = settings.kafka
    if not kafka.bootstrap_servers:
        raise ValueError("kafka.bootstrap_servers is not set")
    streams = settings.streams
    datadir = Path(streams.state_dir) / streams.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    faust_fixes.install()
    app = faust.App(
        streams.app_id,
        broker=[f"kafka://{server}" for server in kafka.bootstrap_servers.split(",")],
        store="rocksdb://",
        datadir=str(datadir),
        topic_replication_factor=kafka.replication_factor,
        topic_partitions=STREAM_PARTITIONS,
        # Our topics come from `threadlink topics apply`; Faust only creates its own
        # (changelogs, assignor).
        topic_allow_declare=True,
        producer_acks=-1,
        # Outputs of many events travel together; the flows wait for their acknowledgement.
        producer_linger_ms=5,
        consumer_auto_offset_reset="earliest",
        web_enabled=streams.web_port > 0,
        web_host=streams.web_host,
        web_port=streams.web_port or 6066,
        broker_client_id=f"{kafka.client_id}-streams",
        stream_wait_empty=False,
    )
    ctx = StreamsContext(
        app=app,
        settings=settings,
        topics=topic_defs.StreamTopics(kafka.topics, app),
        tables=table_defs.StreamTables.declare(app),
    )

    @app.page("/metrics")
    async def metrics(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return view.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    ctx.article_reader = ArticleReader(
        kafka.bootstrap_servers, kafka.topics.records, ctx.articles, client_id=f"{kafka.client_id}-know"
    )
    ctx.subscription_reader = subscriptions.reader(
        kafka.bootstrap_servers, kafka.topics.subscriptions, ctx.subscriptions, client_id=f"{kafka.client_id}-reach"
    )

    @app.page("/healthz")
    async def healthz(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        # Serving at all means the worker's loop runs; what it owns says whether it has joined.
        return view.json({"status": "ok", "partitions": len(app.consumer.assignment())})

    joined = asyncio.Event()

    @app.on_rebalance_complete.connect
    def on_rebalanced(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        joined.set()

    @app.page("/readyz")
    async def readyz(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        # Ready once it has joined the group and recovered its tables (a worker with no partition
        # is ready too: it stands by); until then a rollout waits for it.
        partitions = len(app.consumer.assignment())
        if joined.is_set():
            return view.json({"status": "ready", "partitions": partitions})
        return view.json({"status": "joining", "partitions": partitions}, status=503)

    ctx.flow = agents.register(ctx)
    queries.register(ctx)
    reach_timer.register(ctx)
    table_sizes.register(ctx)
    names = ctx.topics.names
    lag.register(app, [names.social_events, names.records, names.record_comments, names.link_requests, names.outcomes])
    return ctx
