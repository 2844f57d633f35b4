"""threadlink links social threads (Slack, Matrix, ...) to core systems over Apache Kafka.

threadlink run                      everything in one go (no config: the sandbox demo)
threadlink connectors run           webhook sources, pollers and sinks of the configured connectors
threadlink streams run              the Faust stream processors
threadlink topics apply | list      create/update the topics of the catalog
threadlink config check             validate the config, print it with secrets masked
threadlink dlq list | replay        what could not be processed; send it back once fixed
threadlink backfill slack           old threads of a channel, as if they came in live
threadlink links record | thread    which threads discuss a record, which records a thread touches
threadlink matrix registration      the application service registration file for a homeserver
threadlink dev kafka up|down|status local Apache Kafka for development and tests
threadlink schemas export | check   JSON Schema + AsyncAPI files of the contract

`--config FILE` and `--verbose` go before or after the subcommand; `threadlink COMMAND --help`
says what each one does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.config
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError

from threadlink.config import ConfigError, Settings, load_settings
from threadlink.logs import logging_config

log = logging.getLogger("threadlink")

REPO = Path(__file__).resolve().parents[1]


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    logging.config.dictConfig(logging_config(_level(args, settings), settings.log_format))
    return settings


def _level(args: argparse.Namespace, settings: Settings) -> str:
    return "debug" if getattr(args, "verbose", False) else settings.log_level


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
    wait_s = settings.streams.know.startup_wait_s
    if not ctx.read_articles(wait_s):
        log.warning("not every article and subscription was read within %.0fs; early messages get fewer", wait_s)
    worker = faust.Worker(
        ctx.app,
        loglevel=_level(args, settings),
        logging_config=logging_config(_level(args, settings), settings.log_format),
        quiet=True,
        redirect_stdouts=False,
    )
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


def cmd_status(args: argparse.Namespace) -> int:
    from threadlink.status import gather, healthy, render

    settings = _settings(args)
    _require_kafka(settings)
    rows = gather(settings)
    print(render(rows))
    return 0 if healthy(rows) else 1


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


def _since(value: str) -> datetime:
    """A day (2026-11-01) or a moment (2026-11-01T08:00:00+00:00); UTC unless it says."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date such as 2026-11-01 or 2026-11-01T08:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _per_minute(value: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        rate = 0.0
    if not 0 < rate <= 10_000:
        raise argparse.ArgumentTypeError(f"{value!r} is not a rate of calls a minute (a number above 0)")
    return rate


def _connector_of(settings: Settings, kind: str, label: str, name: str | None) -> str:
    """The configured connector of type `kind` named `name`, or the only one of that type."""
    found = [n for n, entry in settings.connectors.items() if (entry.type or n) == kind]
    if name is not None:
        if name not in found:
            raise ConfigError(
                f"connectors.{name}: no {label} connector of that name ({label} connectors: {found or 'none'})"
            )
        return name
    if len(found) != 1:
        raise ConfigError(f"say which {label} connector with --connector (configured: {found or 'none'})")
    return found[0]


def _slack_connector(settings: Settings, name: str | None) -> str:
    return _connector_of(settings, "slack", "Slack", name)


def cmd_matrix_registration(args: argparse.Namespace) -> int:
    from connectors.matrix.registration import RegistrationError, registration_yaml
    from threadlink.config import connector_config

    settings = _settings(args)
    name = _connector_of(settings, "matrix", "Matrix", args.connector)
    try:
        text = registration_yaml(connector_config(settings, name), name=name, url=args.url)
    except RegistrationError as exc:
        raise ConfigError(str(exc)) from None
    if args.output is None:
        sys.stdout.write(text)
        return 0
    path = Path(args.output)
    # It holds both tokens: readable by its owner only, like the config.
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(text)
    print(f"wrote {path}: list it under app_service_config_files in the homeserver's config", file=sys.stderr)
    return 0


def cmd_backfill_slack(args: argparse.Namespace) -> int:
    from connectors.errors import ConnectorError
    from connectors.runtime.kafka import KafkaPublisher
    from connectors.slack.backfill import CheckpointStore, SlackBackfill
    from connectors.slack.client import SlackClient
    from connectors.slack.mapping import SlackIdentity
    from threadlink.config import connector_config

    settings = _settings(args)
    _require_kafka(settings)
    name = _slack_connector(settings, args.connector)
    config = connector_config(settings, name)
    if args.until is not None and args.until <= args.since:
        raise ConfigError(f"--until ({args.until:%Y-%m-%d %H:%M}) is not after --since ({args.since:%Y-%m-%d %H:%M})")
    kafka = settings.kafka
    publisher = KafkaPublisher(kafka.bootstrap_servers or "", client_id=f"{kafka.client_id}-backfill", connector=name)

    async def backfill() -> int:
        client = SlackClient(config)
        identity = SlackIdentity(
            bot_user_id=config.bot_user_id,
            bot_id=config.bot_id,
            app_id=config.app_id,
            workspace_url=config.workspace_url,
        )
        job = SlackBackfill(
            name,
            client,
            identity,
            publisher,
            kafka.topics,
            CheckpointStore(kafka.bootstrap_servers or "", kafka.topics, publisher, name),
            calls_per_minute=args.calls_per_minute or config.rate_limits.tier3_per_minute,
            ignore_bots=set(config.ignore_bots),
        )
        try:
            for channel in args.channel:
                report = await job.run(channel, args.since, args.until, restart=args.restart)
                if report.already_done:
                    print(
                        f"{channel}: already backfilled from {args.since:%Y-%m-%d} ({report.messages} messages); "
                        "--restart to do it again"
                    )
                    continue
                print(
                    f"{channel}: {report.messages} messages in {report.threads} threads"
                    + (f", {report.skipped} skipped" if report.skipped else "")
                    + (" (resumed from its checkpoint)" if report.resumed else "")
                )
        except ConnectorError as exc:
            print(f"threadlink: backfill stopped: {exc}; run it again to resume from its checkpoint", file=sys.stderr)
            return 1
        finally:
            await client.aclose()
        return 0

    try:
        return asyncio.run(backfill())
    finally:
        publisher.close()


def cmd_links(args: argparse.Namespace) -> int:
    import json

    from threadlink.links import LinksError, Query, ask, format_records, format_threads, worker_url

    settings = _settings(args)
    if args.what == "record":
        query = Query("/links/threads", "record", args.id, args.audience)
    else:
        query = Query("/links/records", "thread", args.id)
    try:
        answer = ask(worker_url(settings, args.worker), query)
    except LinksError as exc:
        print(f"threadlink: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print("\n".join(format_threads(answer) if args.what == "record" else format_records(answer)))
    return 0


def cmd_sandbox_post(args: argparse.Namespace) -> int:
    from sandbox.post import post
    from threadlink.launcher import RUN_DIR

    return post(RUN_DIR / "sandbox", args.text, channel=args.channel, thread_ts=args.thread)


def cmd_run(args: argparse.Namespace) -> int:
    from threadlink.launcher import run_all

    return run_all(config=args.config, once=args.once, keep_kafka=args.keep_kafka)


def _common_options() -> argparse.ArgumentParser:
    """--config and --verbose, accepted before or after the subcommand (SUPPRESS: an option
    given in one place is not reset by the other's default)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        "-c",
        default=argparse.SUPPRESS,
        help="config file (default: $THREADLINK_CONFIG, else ./threadlink.yaml if present)",
    )
    common.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    summary, _, commands = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(
        prog="threadlink",
        description=summary,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + commands,
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def group(name: str, summary: str) -> Any:
        return sub.add_parser(name, help=summary, description=summary).add_subparsers(
            dest="action", required=True, metavar="ACTION"
        )

    def leaf(parent: Any, name: str, summary: str, description: str, func: Any) -> argparse.ArgumentParser:
        command = parent.add_parser(
            name,
            help=summary,
            description=f"{summary}.\n\n{description}",
            parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.set_defaults(func=func)
        return command

    run = leaf(
        sub,
        "run",
        "run everything; with no config file, the sandbox demo",
        "Starts a local Kafka broker when kafka.bootstrap_servers is unset, creates the topics, and runs\n"
        "`connectors run` and `streams run` as child processes under one supervisor (Ctrl-C stops all).\n"
        "With no config file it runs the sandbox demo: local stand-ins for Slack and Jira.",
        cmd_run,
    )
    run.add_argument("--once", action="store_true", help="stop after the demo shows its result")
    run.add_argument("--keep-kafka", action="store_true", help="leave a broker we started running on exit")

    connectors = group("connectors", "the connector runtime")
    crun = leaf(
        connectors,
        "run",
        "serve webhooks and run the sinks, pollers and stream sources",
        "One HTTP server for every webhook route (/webhooks/<connector>/..., /metrics, /healthz), the\n"
        "sinks of the commands topics, and the pollers (each on one replica) and stream sources.",
        cmd_connectors_run,
    )
    crun.add_argument("--only", help="comma-separated connector names (default: all configured)")
    crun.add_argument("--no-sinks", action="store_true", help="do not run the sinks (webhooks and pollers only)")
    crun.add_argument("--no-webhooks", action="store_true", help="do not serve webhooks (sinks and pollers only)")

    streams = group("streams", "the stream processors")
    leaf(
        streams,
        "run",
        "run a Faust worker",
        "Runs the link flow; start several for more partitions in parallel (one consumer group).",
        cmd_streams_run,
    )

    topics = group("topics", "the Kafka topics of the catalog")
    leaf(
        topics,
        "apply",
        "create or update the catalog's topics on the broker",
        "Creates missing topics and applies the catalog's configs (other settings are kept). Adds\n"
        "partitions only where no key's state depends on its partition: keyed, compacted or\n"
        "co-partitioned topics are refused with a REFUSED line saying how to migrate (exit 1; see\n"
        "docs/architecture.md, 'Changing partition counts'). Never deletes a topic and never shrinks\n"
        "one (Kafka cannot). Waits until every broker lists every topic with its partition leaders.",
        cmd_topics_apply,
    )
    leaf(
        topics,
        "list",
        "print the catalog",
        "Each topic's name, key, partitions, cleanup policy, retention and purpose. Needs no broker.",
        cmd_topics_list,
    )

    leaf(
        sub,
        "status",
        "is threadlink healthy: processes, sinks, workers, lag, dead letters",
        "A table from the broker (each sink's and the workers' consumer group: members and lag; the\n"
        "dead letters held) and from the processes' /healthz (which sinks are down, and why).\n"
        "Exit 0 when everything is up, 1 otherwise.",
        cmd_status,
    )

    config = group("config", "the deployment config")
    leaf(
        config,
        "check",
        "validate the config and print it, secrets masked",
        "Reports every problem at once, each with its location; then prints the effective config\n"
        "(file, then THREADLINK_* environment overrides) with secrets masked.",
        cmd_config_check,
    )

    dev = sub.add_parser("dev", help="development helpers", description="development helpers").add_subparsers(
        dest="tool", required=True, metavar="TOOL"
    )
    kafka = leaf(
        dev,
        "kafka",
        "local Apache Kafka (KRaft) on 127.0.0.1",
        "fetch: the jars (Maven); up/down/status: one broker on 9092, or --cluster for three;\n"
        "wipe: stop and delete its data. Only what this script started is ever stopped.",
        cmd_dev_kafka,
    )
    kafka.add_argument("action", choices=["fetch", "up", "down", "status", "wipe"], help="what to do (see above)")
    kafka.add_argument("--cluster", action="store_true", help="3 nodes, RF 3, min ISR 2, ports 19092-19094")

    dlq = group("dlq", "the dead-letter topic")
    leaf(
        dlq,
        "list",
        "what could not be processed, and why",
        "One line per dead letter: its offset, when it failed, the consumer (sink.<name>, streams.link,\n"
        "webhook.<name>), the kind of error, where it came from, and the reason.",
        cmd_dlq_list,
    )
    dlq_replay = leaf(
        dlq,
        "replay",
        "send dead letters back to their topics, each once",
        "After fixing the cause. Progress is kept per --consumer filter, so each letter is replayed once;\n"
        "sinks skip commands their ledger has done. Dead-lettered webhook requests are not replayed\n"
        "(they came over HTTP): re-deliver them from the platform.",
        cmd_dlq_replay,
    )
    dlq_replay.add_argument("--consumer", help="only those of this consumer, e.g. sink.slack")
    dlq_replay.add_argument("--dry-run", action="store_true", help="list what would be replayed")

    backfill = group("backfill", "old history, as if it came in live")
    slack_backfill = leaf(
        backfill,
        "slack",
        "read a channel's history and replies into the social events",
        "conversations.history and conversations.replies, a page at a time at the methods' tier rate,\n"
        "with progress on stderr. Checkpointed after every page: run it again to resume; a finished\n"
        "channel is not read again unless --restart. Links and cards appear for the old threads,\n"
        "never twice. Scopes: channels:history, channels:read (groups:* for private channels).",
        cmd_backfill_slack,
    )
    slack_backfill.add_argument(
        "--channel", action="append", required=True, help="channel id (C..., G...); repeat for several"
    )
    slack_backfill.add_argument(
        "--since", type=_since, required=True, help="from this day or moment (UTC unless given)"
    )
    slack_backfill.add_argument("--until", type=_since, help="up to this day or moment (default: now)")
    slack_backfill.add_argument("--connector", help="the Slack connector's name (default: the only one configured)")
    slack_backfill.add_argument("--restart", action="store_true", help="ignore the checkpoint: read it all again")
    slack_backfill.add_argument(
        "--calls-per-minute", type=_per_minute, help="Web API calls a minute (default: rate_limits.tier3_per_minute)"
    )

    ID_FORMS = {"record": "system:key", "thread": "platform:workspace:channel:thread"}
    links = group("links", "what the links know, asked of a running streams worker")
    for what, summary, description in (
        (
            "record",
            "the threads that discuss a record (e.g. jira:ACME-1)",
            "Its cards and the mentions still waiting for it, most recent first. --audience public\n"
            "leaves out threads in places narrower than that audience (private channels, DMs).",
        ),
        (
            "thread",
            "the records a thread touches (e.g. slack:T1:C1:1700000000.000100)",
            "Records named in its messages, its ticket (Escalate), the articles suggested there (Know).",
        ),
    ):
        command = leaf(
            links,
            what,
            summary,
            description + "\nAny worker answers: each forwards to the one that owns the key.",
            cmd_links,
        )
        command.set_defaults(what=what)
        command.add_argument(
            "id",
            help=f"the {what}'s id, as on Kafka ({ID_FORMS[what]})",
        )
        command.add_argument("--worker", help="a streams worker's URL (default: streams.web_host/web_port)")
        command.add_argument("--json", action="store_true", help="print the worker's JSON answer")
        if what == "record":
            command.add_argument("--audience", choices=["public", "internal", "restricted"], help="who will read it")
        else:
            command.set_defaults(audience=None)

    matrix = group("matrix", "the Matrix homeserver side")
    matrix_registration = leaf(
        matrix,
        "registration",
        "print the application service registration file for the homeserver",
        "From the Matrix connector's config: id, url, as_token, hs_token, sender_localpart and the\n"
        "namespace of threadlink's own user, so the homeserver and threadlink hold the same tokens.\n"
        "Synapse: list the file under app_service_config_files and restart it. The file holds both\n"
        "tokens: --output writes it readable by its owner only.",
        cmd_matrix_registration,
    )
    matrix_registration.add_argument("--connector", help="the Matrix connector's name (default: the only one)")
    matrix_registration.add_argument("--url", help="threadlink's URL for it (default: the connector's url)")
    matrix_registration.add_argument("--output", "-o", help="write it to this file (mode 0600) instead of stdout")

    sandbox = group("sandbox", "the running sandbox demo (`make run`)")
    post = leaf(
        sandbox,
        "post",
        "post a message as a user in the sandbox Slack and show threadlink's answer",
        "The stand-in signs and delivers the event as Slack does; mention DEMO-1 or OPS-7 to get a card.",
        cmd_sandbox_post,
    )
    post.add_argument("text", help="the message, e.g. 'Is DEMO-1 fixed?'")
    post.add_argument("--channel", help="channel id (default: the demo's channel)")
    post.add_argument("--thread", help="reply in the thread of this ts")

    schemas = group("schemas", "the exported contract files")
    leaf(
        schemas,
        "export",
        "rewrite schemas/json and schemas/asyncapi.yaml",
        "After a model change; refuses a breaking change unless SCHEMA_VERSION's major is bumped.",
        cmd_schemas,
    )
    leaf(schemas, "check", "fail if they drift from the models", "What CI runs.", cmd_schemas)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.config = getattr(args, "config", None)
    args.verbose = getattr(args, "verbose", False)
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
