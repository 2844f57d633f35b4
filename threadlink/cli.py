"""threadlink links social threads (Slack, Matrix, ...) to core systems over Apache Kafka.

threadlink run                      everything in one go (no config: the sandbox demo)
threadlink connectors run           webhook sources, pollers and sinks of the configured connectors
threadlink streams run              the Faust stream processors
threadlink topics apply | list      create/update the topics of the catalog
threadlink config check             validate the config, print it with secrets masked
threadlink dev kafka up|down|status local Apache Kafka for development and tests
threadlink schemas export | check   JSON Schema + AsyncAPI files of the contract
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from kafka.errors import KafkaError

from threadlink.config import ConfigError, Settings, load_settings

log = logging.getLogger("threadlink")

REPO = Path(__file__).resolve().parents[1]


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    _logging(settings.log_level if not getattr(args, "verbose", False) else "debug")
    return settings


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kafka-python is chatty at INFO about every connection.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))


def _require_kafka(settings: Settings) -> None:
    if not settings.kafka.bootstrap_servers:
        raise ConfigError(
            "kafka.bootstrap_servers is not set: set it in the config (or THREADLINK_KAFKA__BOOTSTRAP_SERVERS), "
            "or use `threadlink run`, which starts a local broker"
        )


def cmd_connectors_run(args: argparse.Namespace) -> int:
    from connectors.runtime.host import ConnectorHost

    settings = _settings(args)
    _require_kafka(settings)
    only = set(args.only.split(",")) if args.only else None
    unknown = (only or set()) - set(settings.connectors)
    if unknown:
        raise ConfigError(f"--only names connectors that are not configured: {', '.join(sorted(unknown))}")
    host = ConnectorHost(settings, only=only, run_webhooks=not args.no_webhooks, run_sinks=not args.no_sinks)
    asyncio.run(host.serve_forever())
    return 0


def cmd_streams_run(args: argparse.Namespace) -> int:
    import faust

    from streams.app import create_app

    settings = _settings(args)
    _require_kafka(settings)
    ctx = create_app(settings)
    worker = faust.Worker(ctx.app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0


def cmd_topics_apply(args: argparse.Namespace) -> int:
    from threadlink.topics_admin import REFUSED, apply_topics

    settings = _settings(args)
    _require_kafka(settings)
    report = apply_topics(settings)
    for line in report:
        print(line)
    return 1 if any(line.startswith(REFUSED) for line in report) else 0


def cmd_topics_list(args: argparse.Namespace) -> int:
    from threadlink.topics_admin import planned_topics

    settings = load_settings(args.config)
    for spec in planned_topics(settings):
        retention = "forever" if spec.retention_ms is None else f"{spec.retention_ms // 3_600_000}h"
        print(
            f"{spec.name:45} key={spec.key:22} partitions={spec.partitions} {spec.cleanup_policy:8} "
            f"retention={retention}  {spec.description}"
        )
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    import yaml

    settings = load_settings(args.config)
    # SecretStr values print as '**********'; plugin fields are re-validated so they mask too.
    from threadlink.config import connector_config

    doc = settings.model_dump(mode="json", exclude={"connectors"})
    doc["connectors"] = {
        name: {"type": entry.type or name, **connector_config(settings, name).model_dump(mode="json")}
        for name, entry in settings.connectors.items()
    }
    print(yaml.safe_dump(doc, sort_keys=False).rstrip())
    print("config ok", file=sys.stderr)
    return 0


def cmd_dev_kafka(args: argparse.Namespace) -> int:
    from threadlink.devkafka import local_kafka

    module = local_kafka()
    argv = [args.action] + (["--cluster"] if args.cluster else [])
    return int(module.main(argv))


def cmd_schemas(args: argparse.Namespace) -> int:
    from schemas import export

    return int(export.main(["--write" if args.action == "export" else "--check"]))


def cmd_dlq_list(args: argparse.Namespace) -> int:
    from threadlink.deadletters import list_dead_letters

    settings = _settings(args)
    _require_kafka(settings)
    letters = list_dead_letters(settings)
    for offset, letter in letters:
        print(
            f"{offset:>6}  {letter.failed_at:%Y-%m-%d %H:%M:%S}  {letter.consumer:16} {letter.error_kind:17} "
            f"{letter.topic}[{letter.partition}]@{letter.offset}  {letter.reason}"
        )
    print(f"{len(letters)} dead letter(s) in {settings.kafka.topics.dead_letters}", file=sys.stderr)
    return 0


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    from threadlink.deadletters import replay

    settings = _settings(args)
    _require_kafka(settings)
    report = replay(settings, consumer=args.consumer, dry_run=args.dry_run)
    verb = "would replay" if args.dry_run else "replayed"
    for letter in report.replayed:
        print(f"{verb} {letter.topic}[{letter.partition}]@{letter.offset} ({letter.error_kind}: {letter.reason})")
    print(f"{verb} {len(report.replayed)}, skipped {report.skipped}", file=sys.stderr)
    if not report.complete:
        print(
            "threadlink: stopped at the time limit before the end of the topic; run it again for the rest",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from threadlink.launcher import run_all

    return run_all(config=args.config, once=args.once, keep_kafka=args.keep_kafka)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="threadlink",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--config", "-c", help="config file (default: $THREADLINK_CONFIG or ./threadlink.yaml)")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run everything; with no config file, the sandbox demo")
    run.add_argument("--once", action="store_true", help="stop after the demo shows its result")
    run.add_argument("--keep-kafka", action="store_true", help="leave a broker we started running on exit")
    run.set_defaults(func=cmd_run)

    connectors = sub.add_parser("connectors", help="connector runtime").add_subparsers(dest="action", required=True)
    crun = connectors.add_parser("run", help="serve webhooks and run sinks and pollers")
    crun.add_argument("--only", help="comma-separated connector names (default: all configured)")
    crun.add_argument("--no-sinks", action="store_true")
    crun.add_argument("--no-webhooks", action="store_true")
    crun.set_defaults(func=cmd_connectors_run)

    streams = sub.add_parser("streams", help="stream processors").add_subparsers(dest="action", required=True)
    streams.add_parser("run", help="run a Faust worker").set_defaults(func=cmd_streams_run)

    topics = sub.add_parser("topics", help="Kafka topics of the catalog").add_subparsers(dest="action", required=True)
    topics.add_parser("apply", help="create or update them on the broker").set_defaults(func=cmd_topics_apply)
    topics.add_parser("list", help="print the catalog").set_defaults(func=cmd_topics_list)

    config = sub.add_parser("config", help="the deployment config").add_subparsers(dest="action", required=True)
    config.add_parser("check", help="validate and print it, secrets masked").set_defaults(func=cmd_config_check)

    dev = sub.add_parser("dev", help="development helpers").add_subparsers(dest="tool", required=True)
    kafka = dev.add_parser("kafka", help="local Apache Kafka (KRaft) on 127.0.0.1")
    kafka.add_argument("action", choices=["fetch", "up", "down", "status", "wipe"])
    kafka.add_argument("--cluster", action="store_true", help="3 nodes, RF 3, min ISR 2, ports 19092-19094")
    kafka.set_defaults(func=cmd_dev_kafka)

    dlq = sub.add_parser("dlq", help="the dead-letter topic").add_subparsers(dest="action", required=True)
    dlq.add_parser("list", help="what could not be processed, and why").set_defaults(func=cmd_dlq_list)
    dlq_replay = dlq.add_parser("replay", help="send dead letters back to their topics (each once)")
    dlq_replay.add_argument("--consumer", help="only those of this consumer, e.g. sink.slack")
    dlq_replay.add_argument("--dry-run", action="store_true", help="list what would be replayed")
    dlq_replay.set_defaults(func=cmd_dlq_replay)

    schemas = sub.add_parser("schemas", help="exported contract files").add_subparsers(dest="action", required=True)
    schemas.add_parser("export", help="rewrite schemas/json and schemas/asyncapi.yaml").set_defaults(func=cmd_schemas)
    schemas.add_parser("check", help="fail if they drift from the models").set_defaults(func=cmd_schemas)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"threadlink: the configuration has problems:\n{exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(
            f"threadlink: Kafka did not answer ({exc}); check kafka.bootstrap_servers and that the "
            "brokers are up (`threadlink dev kafka status` for the local one)",
            file=sys.stderr,
        )
        return 3
    except (RuntimeError, TimeoutError) as exc:  # an operation failed for a reason it states
        if args.verbose:
            raise
        print(f"threadlink: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
