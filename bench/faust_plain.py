"""The yardstick: plain Faust agents written the obvious way, each in a worker process of its own.

    python -m bench.faust_plain --mode passthrough|lookup --bootstrap HOST:PORT --namespace NS --tickets N

- `passthrough` consumes each message (JSON), and produces it to another topic.
- `lookup` does the link flow's key lookup: finds keys like PROJ-123 with the mention regex,
  looks each up in an in-memory dict of tickets, and sends one card per hit
  (`await topic.send(...)` each).

No dead-lettering, no tables, no acknowledgement awaited: what threadlink does on top of this is
what it pays for. Both read `<ns>.social.messages` and write `<ns>.commands.slack` of their own
namespace (schemas.topics.TopicNames), with Faust's defaults otherwise (acks=-1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import workload
from schemas.topics import TopicNames

if TYPE_CHECKING:
    from bench.context import RunContext

MODES = ("passthrough", "lookup")


def build_app(mode: str, bootstrap: str, namespace: str, tickets: int, datadir: Path) -> Any:
    import faust

    names = TopicNames(namespace)
    app = faust.App(
        f"{namespace}-app",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=str(datadir),
        value_serializer="json",
        web_enabled=False,
    )
    messages = app.topic(names.social_events)
    cards = app.topic(names.commands(workload.PLATFORM))

    if mode == "passthrough":

        @app.agent(messages)
        async def passthrough(stream: Any) -> None:
            async for key, value in stream.items():
                await cards.send(key=key, value=value)

    else:
        table = workload.ticket_table(tickets)
        pattern, system = workload.KEY_RE, workload.MENTION_SYSTEM

        @app.agent(messages)
        async def lookup(stream: Any) -> None:
            async for key, value in stream.items():
                message = value["data"]
                for found in dict.fromkeys(pattern.findall(message["text"])):
                    ticket = table.get(f"{system}:{found}")
                    if ticket is not None:
                        await cards.send(key=key, value=workload.plain_card(message, ticket))

    return app


def measure(ctx: RunContext, mode: str, messages: list[workload.Message], tickets: int) -> dict[str, Any]:
    """One worker of `mode` on its own namespace: messages produced first, then the worker starts."""
    from bench import kafkaio
    from bench.measure import throughput, wait_for_outputs

    deadline = ctx.budget.step(ctx.step_limit_s)
    namespace = ctx.namespace(f"plain-{mode}")
    names = TopicNames(namespace)
    card_topic = names.commands(workload.PLATFORM)
    ctx.admin.create_topics(
        {
            names.social_events: (workload.INPUT_PARTITIONS, {}),
            card_topic: (workload.INPUT_PARTITIONS, kafkaio.LOG_APPEND_TIME),
        }
    )
    produced = kafkaio.produce(
        ctx.bootstrap, names.social_events, ((m.key, m.value) for m in messages), deadline=deadline
    )
    child = ctx.child(
        f"plain-{mode}",
        [
            "-m",
            "bench.faust_plain",
            "--mode",
            mode,
            "--bootstrap",
            ctx.bootstrap,
            "--namespace",
            namespace,
            "--tickets",
            str(tickets),
            "--datadir",
            str(ctx.run_dir / "faust" / mode),
        ],
    )
    if mode == "passthrough":
        expected, reply_to = len(messages), workload.passthrough_reply_to
    else:
        expected, reply_to = sum(len(m.known) for m in messages), workload.plain_card_reply_to
    child.start()
    try:
        waited = wait_for_outputs(
            ctx.admin,
            card_topic,
            expected=expected,
            base=0,
            measure_s=ctx.measure_s,
            deadline=deadline,
            child=child,
            budget=ctx.budget,
            label=f"plain {mode}",
        )
        rss = child.rss()
    finally:
        child.stop()
    outputs = kafkaio.read_outputs(ctx.bootstrap, card_topic, ctx.admin.partitions(card_topic))
    result = throughput(outputs, reply_to, messages, produced, expected=expected, ended=waited.ended)
    return {**result.as_dict(), "rss_bytes": rss}


def main(argv: list[str] | None = None) -> int:
    import faust

    parser = argparse.ArgumentParser(prog="python -m bench.faust_plain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--tickets", type=int, default=0, help="tickets in the lookup dict")
    parser.add_argument("--datadir", type=Path, default=Path(".run/bench/faust"))
    args = parser.parse_args(argv)
    args.datadir.mkdir(parents=True, exist_ok=True)
    app = build_app(args.mode, args.bootstrap, args.namespace, args.tickets, args.datadir)
    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
