"""`make bench`: one bounded run measuring, on the same broker, partitions and payloads,

1. the broker's own limit (Kafka's ProducerPerformance / ConsumerPerformance),
2. plain Faust agents written the obvious way (pass-through; key lookup), the yardstick,
3. threadlink's link flow (the real `threadlink streams run` worker) with a full ticket table,
4. table load time and worker RSS at each size, first start and restart,
5. the Slack sink (the real `threadlink connectors run` process against a fake Slack): its
   commands/s, Slack's per-channel limit honoured without stalling other channels, and a start
   on a ledger of a million entries,
6. end-to-end latency, from a signed Slack webhook accepted to the sink's chat.postMessage, at
   fixed offered rates (bench/latency.png),
7. the connectors process's RSS under hostile webhook load,

and writing bench/results.md and bench/results.json (see bench/report.py).

    python -m bench [--sizes 10000,100000] [--label before] [--messages 100000] [--only sinks,latency] ...
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench import broker, faust_plain, know, latency, linkflow, mqtt, report, sinks, tables, webhook_memory, workload
from bench.budget import Budget, RunAborted, StepTimeout
from bench.context import REPO, RunContext
from bench.kafkaio import Admin

NOT_REACHED = {"not_measured": "the run stopped before this step ended"}
MIN_STEP_S = 15.0
"""A step is not started with less of the run's budget left than this."""
GROUPS = ("broker", "plain", "tables", "link", "sinks", "latency", "webhook-memory", "know", "mqtt")
"""What `--only` picks from (every group by default)."""


def _ints(text: str) -> list[int]:
    return [int(s.replace("_", "")) for s in text.split(",") if s.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="table sizes, comma-separated (default: %(default)s)")
    parser.add_argument("--label", default=None, help="keep this run for before/after comparisons under this name")
    parser.add_argument("--messages", type=int, default=100_000, help="messages per flow (default: %(default)s)")
    parser.add_argument(
        "--link-tickets",
        type=int,
        default=100_000,
        help="tickets in the table for the link flow (default: %(default)s)",
    )
    parser.add_argument(
        "--broker-records", type=int, default=300_000, help="records for Kafka's perf tools (default: %(default)s)"
    )
    parser.add_argument(
        "--measure-s", type=float, default=60, help="cap of a flow's measurement after its first output (s)"
    )
    for flag, default, what in (
        ("--sink-commands", 1000, "commands for the sink's throughput"),
        ("--hot-commands", 10, "commands into the one hot channel, with Slack's per-channel limit on"),
        ("--other-commands", 2, "commands into each of the other 199 channels"),
        ("--ledger-entries", 1_000_000, "ledger entries a sink starts on"),
        ("--mqtt-messages", 20_000, "MQTT status messages drained by a bare subscriber and by the source"),
    ):
        parser.add_argument(flag, type=int, default=default, help=f"{what} (default: %(default)s)")
    parser.add_argument(
        "--latency-rates", default="100,1000,5000", help="offered webhook rates, messages/s (default: %(default)s)"
    )
    parser.add_argument("--latency-s", type=float, default=5, help="how long each rate is offered (s)")
    parser.add_argument("--latency-threads", type=int, default=1000, help="threads the latency messages go to")
    parser.add_argument("--step-limit", type=float, default=240, help="time limit of each step (s)")
    parser.add_argument("--max-minutes", type=float, default=14, help="the whole run stops cleanly after this")
    parser.add_argument("--bootstrap", default=os.environ.get("THREADLINK_BENCH_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--out", type=Path, default=REPO / "bench", help="where results.md/.json go")
    parser.add_argument("--keep-logs", action="store_true", help="keep the run's logs (.run/bench/<run id>/logs)")
    parser.add_argument("--only", default=None, help=f"comma-separated steps to run, of: {', '.join(GROUPS)}")
    args = parser.parse_args(argv)
    try:
        args.latency_rates = sorted(set(_ints(args.latency_rates)))
    except ValueError:
        parser.error(f"--latency-rates takes whole numbers separated by commas (got {args.latency_rates!r})")
    args.only = set(GROUPS) if not args.only else {g.strip() for g in args.only.split(",") if g.strip()}
    if args.only - set(GROUPS):
        parser.error(f"--only takes some of {', '.join(GROUPS)} (got {', '.join(sorted(args.only - set(GROUPS)))})")
    try:
        args.sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sizes takes whole numbers separated by commas, e.g. 10000,100000 (got {args.sizes!r})")
    if args.label is not None and not args.label.strip():
        args.label = None
    return args


def ensure_broker(bootstrap: str) -> Any:
    """The local broker, started when nothing answers on 127.0.0.1:9092 (returned: we stop it)."""
    from threadlink.devkafka import local_kafka

    module = local_kafka()
    port = int(bootstrap.split(",")[0].rsplit(":", 1)[1])
    if module.serves_requests(port):
        return None
    if bootstrap != "127.0.0.1:9092":
        raise SystemExit(f"bench: no Kafka broker answers at {bootstrap}")
    print("bench: starting the local Kafka broker (deploy/kafka/local_kafka.py up)", flush=True)
    kafka = module.LocalKafka("single")
    kafka.up(quiet=True)
    return kafka


class Runner:
    def __init__(self, args: argparse.Namespace, ctx: RunContext) -> None:
        self.args, self.ctx = args, ctx
        self.failed: list[str] = []
        self.link_deployment: linkflow.Deployment | None = None
        """The table of --link-tickets, kept serving for the link flow (its load is not repeated)."""

    def step(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run one step; a timeout or failure becomes its figure ("not measured: ...")."""
        budget = self.ctx.budget
        if budget.remaining() < MIN_STEP_S:
            budget.say(f"{name}: skipped, the run's {budget.limit_s:.0f} s are spent")
            return {"not_measured": f"skipped: the run's {budget.limit_s:.0f} s limit was reached"}
        started = time.monotonic()
        budget.say(f"{name} ...")
        try:
            result = fn()
        except StepTimeout as exc:
            result = {"not_measured": str(exc)}
        except RunAborted:
            raise
        except Exception as exc:
            traceback.print_exc()
            self.failed.append(name)
            result = {"not_measured": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
        finally:
            self.stop_children()
        took = time.monotonic() - started
        state = _state(result)
        budget.say(f"{name}: {state} ({took:.1f} s)")
        return result

    def stop_children(self, keep: object = None) -> None:
        for child in self.ctx.children:
            if child is not keep:
                child.stop()
        self.ctx.children = [c for c in self.ctx.children if c is keep]

    def run(self, figures: dict[str, Any]) -> None:
        args, ctx = self.args, self.ctx
        # Every figure has an entry, also when the run is aborted before its step ends.
        figures.update(
            broker=dict(NOT_REACHED),
            plain_faust={mode: dict(NOT_REACHED) for mode in faust_plain.MODES},
            tables={str(size): {"load": dict(NOT_REACHED), "restart": dict(NOT_REACHED)} for size in args.sizes},
            link_flow=dict(NOT_REACHED),
            sinks={part: dict(NOT_REACHED) for part in ("throughput", "per_channel", "ledger_restart")},
            latency=dict(NOT_REACHED),
            webhook_memory=dict(NOT_REACHED),
            know=dict(NOT_REACHED),
            mqtt=dict(NOT_REACHED),
        )
        only = args.only
        skipped = {"not_measured": f"not run (--only {','.join(sorted(only))})"}
        for group, name in (
            ("broker", "broker"),
            ("plain", "plain_faust"),
            ("tables", "tables"),
            ("link", "link_flow"),
            ("sinks", "sinks"),
            ("latency", "latency"),
            ("webhook-memory", "webhook_memory"),
            ("know", "know"),
            ("mqtt", "mqtt"),
        ):
            if group not in only:
                # Said as such in results.md; sizes of a table step not run have no row.
                figures[name] = {} if name == "tables" else _deep_replace(figures[name], skipped)
        if "broker" in only:
            figures["broker"] = self.step(
                "broker: Kafka's perf tools", lambda: broker.measure(ctx, args.broker_records)
            )
        if only & {"plain", "link"}:
            ctx.budget.say(f"building {args.messages:,} message envelopes (schemas/ models)")
            messages = list(workload.messages(args.messages, args.link_tickets))
            figures["workload"] = workload.describe(messages, args.link_tickets)
        if "plain" in only:
            plain = figures["plain_faust"]
            for mode in faust_plain.MODES:
                plain[mode] = self.step(
                    f"plain Faust {mode}", partial(faust_plain.measure, ctx, mode, messages, args.link_tickets)
                )
        table_figures = figures.get("tables", {})
        # Larger tables after the link flow: a size that does not fit must not cost it its time.
        if "tables" in only:
            for size in [s for s in args.sizes if s <= args.link_tickets]:
                table_figures[str(size)] = self.step(f"table of {size:,} records", partial(self._table, size))
        if "link" in only:
            figures["link_flow"] = self.step("threadlink link flow", lambda: self._link(messages))
        if self.link_deployment is not None:
            self.link_deployment.stop()  # what follows needs the cores
            self.link_deployment = None
        if "tables" in only:
            for size in [s for s in args.sizes if s > args.link_tickets]:
                table_figures[str(size)] = self.step(f"table of {size:,} records", partial(self._table, size))
        if "sinks" in only:
            sink_figures = figures["sinks"]
            sink_figures["throughput"] = self.step(
                "Slack sink: throughput", partial(sinks.throughput, ctx, args.sink_commands)
            )
            sink_figures["per_channel"] = self.step(
                "Slack sink: per-channel limit",
                partial(sinks.per_channel_limit, ctx, args.hot_commands, args.other_commands),
            )
        if "latency" in only:
            figures["latency"] = self.step(
                "end-to-end latency",
                partial(latency.measure, ctx, args.latency_rates, args.latency_s, args.latency_threads),
            )
        if "webhook-memory" in only:
            figures["webhook_memory"] = self.step(
                "webhook memory under hostile load", partial(webhook_memory.measure, ctx)
            )
        if "know" in only:
            figures["know"] = self.step("Know: suggestions on the labelled set", partial(know.measure, ctx))
        if "mqtt" in only:
            figures["mqtt"] = self.step("MQTT source into Kafka", partial(mqtt.measure, ctx, args.mqtt_messages))
        if "sinks" in only:  # last: the longest of the sink steps, and the one a short budget can spare
            figures["sinks"]["ledger_restart"] = self.step(
                f"Slack sink: start on a ledger of {args.ledger_entries:,}",
                partial(sinks.ledger_restart, ctx, args.ledger_entries),
            )

    def _table(self, size: int) -> dict[str, Any]:
        result, deployment = tables.measure(self.ctx, size, keep=size == self.args.link_tickets)
        if deployment is not None and deployment.worker is not None:
            self.ctx.children.remove(deployment.worker)  # not stopped with this step: the link flow uses it
            self.link_deployment = deployment
        return result

    def _link(self, messages: list[workload.Message]) -> dict[str, Any]:
        deployment = self.link_deployment
        if deployment is None or deployment.worker is None:
            self.ctx.budget.say(f"  loading {self.args.link_tickets:,} tickets for the link flow")
            deployment = linkflow.load(self.ctx, "link", self.args.link_tickets)
        else:
            self.ctx.children.append(deployment.worker)  # stopped with the step, whatever happens
            self.ctx.budget.say(f"  reusing the running worker of the table of {self.args.link_tickets:,}")
        return {"tickets": self.args.link_tickets, **linkflow.measure(self.ctx, deployment, messages)}


def _deep_replace(figure: Any, value: dict[str, Any]) -> Any:
    """`figure` with every not-yet-reached leaf figure replaced by `value`."""
    if isinstance(figure, dict) and "not_measured" not in figure:
        return {key: _deep_replace(part, value) for key, part in figure.items()}
    return dict(value)


def _state(result: Any) -> str:
    """ "done", or the first reason a figure of the step was not measured."""
    if isinstance(result, dict):
        if "not_measured" in result:
            return f"not measured: {result['not_measured']}"
        for value in result.values():
            state = _state(value)
            if state != "done":
                return state
    return "done"


def _watchdog(_signum: int, _frame: object) -> None:
    raise RunAborted("the watchdog stopped a step that overran the run's limit")


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # aiokafka retries a partition whose leader is not known yet right after topic creation; say nothing of it.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    started_kafka = ensure_broker(args.bootstrap)
    prefix = f"bench-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    run_dir = REPO / ".run" / "bench" / prefix
    run_dir.mkdir(parents=True, exist_ok=True)
    budget = Budget(args.max_minutes * 60)
    admin = Admin(args.bootstrap)
    ctx = RunContext(args.bootstrap, prefix, run_dir, admin, budget, args.step_limit, args.measure_s)
    record = report.new_run(args, prefix)
    figures: dict[str, Any] = record["figures"]
    runner = Runner(args, ctx)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGALRM, _watchdog)
    signal.alarm(int(args.max_minutes * 60 + 60))  # a last resort: every wait loop checks the budget itself
    budget.say(f"bench run {prefix}: sizes {', '.join(f'{s:,}' for s in args.sizes)}; at most {budget.limit_s:.0f} s")
    status = 0
    try:
        runner.run(figures)
    except RunAborted as exc:
        record["aborted"] = str(exc)
        budget.say(f"aborted: {exc}")
        status = 1
    except KeyboardInterrupt:
        record["aborted"] = "interrupted"
        budget.say("interrupted: cleaning up")
        status = 130
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the clean-up must not be cut short
        runner.stop_children()
        if runner.link_deployment is not None:
            runner.link_deployment.stop()
        with contextlib.suppress(Exception):
            deleted = admin.delete_prefix(prefix)
            budget.say(f"deleted the run's {len(deleted)} topics ({prefix}*)")
        admin.close()
        if started_kafka is not None:
            started_kafka.down(quiet=True)
    record["duration_s"] = round(budget.elapsed(), 1)
    report.finish_run(record)
    written = report.write(args.out, record)
    budget.say(f"results: {', '.join(str(p) for p in written)}")
    if runner.failed:
        print(f"bench: failed steps: {', '.join(runner.failed)}; logs kept in {run_dir}/logs", file=sys.stderr)
        return status or 1
    if status == 0 and not args.keep_logs:
        shutil.rmtree(run_dir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
