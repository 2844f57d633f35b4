"""The one deployment config: a YAML file, overridable by environment variables.

    THREADLINK_CONFIG=threadlink.yaml             # which file (default: ./threadlink.yaml if present)
    THREADLINK_KAFKA__BOOTSTRAP_SERVERS=host:9092 # any field, nested with __

Validation reports every problem at once, each with its location in the file, and never
echoes secret values.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from schemas.topics import TopicNames
from schemas.visibility import Visibility

CONFIG_ENV = "THREADLINK_CONFIG"
DEFAULT_CONFIG_FILE = "threadlink.yaml"


class ConfigError(Exception):
    """The config is wrong; `str()` is the message for a person, one line per problem."""


class KafkaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bootstrap_servers: str | None = Field(
        default=None,
        description="host:port[,host:port]. Unset: `threadlink run` starts a local broker on 127.0.0.1:9092.",
    )
    namespace: str = Field(default="threadlink", description="Prefix of every topic name and consumer group.")
    replication_factor: int = Field(default=1, ge=1, description="For topics created by `threadlink topics apply`.")
    client_id: str = Field(default="threadlink", description="Kafka client.id prefix, shows in broker logs.")

    @field_validator("namespace")
    @classmethod
    def _namespace_is_topic_safe(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", value):
            raise ValueError("use lower-case letters, digits, '.', '_' or '-' (it prefixes topic names)")
        return value

    @property
    def topics(self) -> TopicNames:
        return TopicNames(self.namespace)


class HttpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="Where webhooks and /metrics are served.")
    port: int = Field(default=8787, ge=0, le=65535)
    public_url: str | None = Field(
        default=None, description="How platforms reach this server (for the webhook URLs `threadlink config` prints)."
    )
    body_read_timeout_s: float = Field(
        default=10.0, gt=0, description="A webhook body that has not fully arrived by then is cut off (408)."
    )
    max_concurrent_requests: int = Field(
        default=256, ge=1, description="Webhook requests read at once; more wait (within the read timeout), then 503."
    )


class MentionPattern(BaseModel):
    model_config = ConfigDict(extra="forbid")

    system: str = Field(description="Connector name of the system the key belongs to, e.g. jira.")
    regex: str = Field(description="Regular expression; the whole match (or group 'key') is the record key.")
    key: str | None = Field(
        default=None,
        description=(
            "The record key built from the regex's named groups, e.g. '{owner}/{repo}#{number}' for an issue URL; "
            "unset: group 'key' or the whole match."
        ),
    )
    lowercase: bool = Field(
        default=False, description="Lower-case the key (systems whose keys are case-insensitive, e.g. GitHub)."
    )

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _key_uses_groups(self) -> MentionPattern:
        if self.key is None:
            return self
        groups = set(re.compile(self.regex).groupindex)
        try:
            self.key.format(**dict.fromkeys(groups, "x"))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"key {self.key!r} names {exc} which is not a named group of the regex "
                f"(named groups: {', '.join(sorted(groups)) or 'none'})"
            ) from None
        return self


class FollowSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window_s: float = Field(
        default=2.0,
        ge=0,
        le=300,
        description="Changes of a record within this many seconds become one update per card (and one reply).",
    )
    notify_fields: list[str] = Field(
        default_factory=lambda: ["status"],
        description="Display fields (by name: status, assignee, priority, ...) whose change also gets a short "
        "reply in each linked thread; the card is updated in place for any change.",
    )
    follow_days: int = Field(
        default=30, ge=1, description="A card stops following its record this many days after its last mention."
    )


class EscalateSettings(BaseModel):
    """Escalate: a thread becomes a ticket, and the two hear each other from then on. Off
    while `target` is unset."""

    model_config = ConfigDict(extra="forbid")

    target: str | None = Field(
        default=None, description="The ticketing connector that opens the tickets (e.g. jira); unset: off."
    )
    project: str = Field(default="SUP", min_length=1, max_length=100, description="The project tickets open in.")
    reaction: str | None = Field(
        default="ticket",
        description="A reaction (by name, without colons) that turns the thread into a ticket; null: none.",
    )
    command: str | None = Field(
        default="ticket",
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="A word that, addressed to threadlink (@threadlink ticket), turns the thread into a ticket.",
    )
    transcript_messages: int = Field(
        default=20, ge=1, le=100, description="The thread's last messages the ticket's description quotes."
    )
    acknowledge: str | None = Field(
        default="eyes",
        pattern=r"^[a-z0-9_+-]{1,50}$",
        description="A reaction threadlink adds to the message that asked for a ticket (null: none).",
    )


class KnowSettings(BaseModel):
    """Know: questions in threads get the articles that may answer them."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Suggest articles for questions (when there are articles).")
    max_suggestions: int = Field(default=3, ge=1, le=10, description="Articles suggested for one question at most.")
    min_score: float = Field(
        default=2.5,
        ge=0,
        description="The lowest BM25 score an article needs to be suggested (higher: fewer, surer suggestions; "
        "see bench/results.md for the precision at the default).",
    )
    startup_wait_s: float = Field(
        default=120, ge=0, description="How long a starting worker waits to have read the articles before it serves."
    )
    draft_target: str | None = Field(
        default=None,
        description="The content connector that writes a resolved thread up as a draft article (e.g. wordpress); "
        "unset: no drafts.",
    )
    resolved_reaction: str | None = Field(
        default="white_check_mark",
        description="A reaction (by name, without colons) that marks the thread resolved; null: none.",
    )
    resolved_command: str | None = Field(
        default="resolved",
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="A word that, addressed to threadlink (@threadlink resolved), marks the thread resolved.",
    )
    transcript_messages: int = Field(
        default=20, ge=1, le=100, description="The thread's last messages the draft article quotes."
    )


class NoticePlace(BaseModel):
    """A channel threadlink tells about a thread, and who reads it (a thread is announced only
    in places no wider than its own: a private channel's thread never in a public one)."""

    model_config = ConfigDict(extra="forbid")

    platform: str = Field(description="The social connector that posts there, e.g. slack.")
    workspace: str = Field(description="Slack team id, Matrix homeserver, ...")
    channel: str = Field(description="Channel or room id.")
    visibility: Visibility = Field(default="internal", description="Who can read that channel.")


class Person(BaseModel):
    """Someone on a social platform, by the platform's own user id."""

    model_config = ConfigDict(extra="forbid")

    platform: str = Field(description="The social connector, e.g. slack.")
    workspace: str = Field(description="Slack team id, Matrix homeserver, ...")
    user_id: str = Field(min_length=1, max_length=255, description="Slack U..., Matrix @user:server.")


class ThreadMatch(BaseModel):
    """Which threads a rule or an SLA tier is for: every condition given must hold (an empty
    list holds for all)."""

    model_config = ConfigDict(extra="forbid")

    platforms: list[str] = Field(default_factory=list, description="Social connectors, e.g. [slack].")
    channels: list[str] = Field(default_factory=list, max_length=1000, description="Channel or room ids.")
    keywords: list[str] = Field(
        default_factory=list, max_length=100, description="Any of these words or phrases (case-insensitive)."
    )
    records: list[str] = Field(
        default_factory=list, description="The message names a record of one of these systems, e.g. [jira]."
    )
    visibility: list[Visibility] = Field(default_factory=list, description="Places of these visibilities.")
    record_kinds: list[Literal["ticket", "article", "production_order", "machine_state"]] = Field(
        default_factory=list, description="The thread names a record of one of these kinds (a rule only)."
    )
    labels: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="The thread names a record with one of these labels or tags, case-insensitive (a rule only).",
    )

    @property
    def on_records(self) -> bool:
        """Whether it needs the record a thread names, known only once the link flow has it."""
        return bool(self.record_kinds or self.labels)


class RoutingRule(BaseModel):
    """When a thread's message matches, once per thread: announce it, escalate it, or both."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$", description="Names the rule in logs and metrics.")
    match: ThreadMatch = Field(default_factory=ThreadMatch)
    notify: list[NoticePlace] = Field(default_factory=list, max_length=10, description="Channels told about it.")
    escalate: bool = Field(default=False, description="Turn the thread into a ticket (needs streams.escalate).")
    subscribe: list[Person] = Field(
        default_factory=list,
        max_length=20,
        description="People brought into the thread: mentioned in it once (those of the thread's platform and "
        "workspace), so their platform tells them of its replies. Never in a private place.",
    )

    @model_validator(mode="after")
    def _does_something(self) -> RoutingRule:
        if not self.notify and not self.escalate and not self.subscribe:
            raise ValueError("a rule needs an action: notify (channels), escalate: true, or subscribe (people)")
        if self.match.on_records and self.match.keywords:
            raise ValueError(
                "match: keywords cannot be combined with record_kinds or labels in one rule (a record is known "
                "only after the message that names it): make two rules"
            )
        return self


class SlaStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after_s: float = Field(gt=0, le=30 * 86400, description="Seconds after the thread started without an answer.")
    notify: list[NoticePlace] = Field(default_factory=list, max_length=10, description="The wider circle told.")
    escalate: bool = Field(default=False, description="Turn the thread into a ticket (needs streams.escalate).")

    @model_validator(mode="after")
    def _does_something(self) -> SlaStep:
        if not self.notify and not self.escalate:
            raise ValueError("a step needs an action: notify (channels) or escalate: true")
        return self


class SlaTier(BaseModel):
    """First-answer SLA of the threads it matches: each step, in order, widens the circle of a
    thread nobody but its author has answered; an answer stops it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="The tier (the metrics' `tier` label).")
    match: ThreadMatch = Field(default_factory=ThreadMatch)
    steps: list[SlaStep] = Field(min_length=1, max_length=10)

    @model_validator(mode="after")
    def _steps_in_order(self) -> SlaTier:
        times = [step.after_s for step in self.steps]
        if times != sorted(set(times)):
            raise ValueError("steps must come in order of after_s, each later than the one before")
        if self.match.on_records:
            raise ValueError(
                "match: record_kinds and labels are for rules; a tier starts with the thread's first message"
            )
        return self


class ReachSettings(BaseModel):
    """Reach: routing rules, and first-answer SLAs that widen a waiting thread's circle."""

    model_config = ConfigDict(extra="forbid")

    rules: list[RoutingRule] = Field(default_factory=list, max_length=100)
    first_answer: list[SlaTier] = Field(
        default_factory=list, max_length=20, description="SLA tiers; a thread gets the first that matches it."
    )
    check_interval_s: float = Field(
        default=15, ge=0.2, le=600, description="How often each worker looks for threads past a step's time."
    )
    subscribe_command: str = Field(
        default="subscribe",
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="@threadlink subscribe SUP-7 | project SUP | keyword checkout (and un<command> to stop).",
    )
    subscribe_reaction: str | None = Field(
        default="bell", description="A reaction that subscribes its author to the records its message names."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> ReachSettings:
        for what, names in (
            ("rules", [r.name for r in self.rules]),
            ("first_answer", [t.name for t in self.first_answer]),
        ):
            twice = sorted({name for name in names if names.count(name) > 1})
            if twice:
                raise ValueError(f"{what}: names must be unique ({', '.join(twice)} used twice)")
        return self


class LimitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mentions_per_message: int = Field(
        default=10, ge=1, le=1000, description="Records one message may link; the rest are logged and counted."
    )
    fetches_per_message: int = Field(
        default=10,
        ge=0,
        le=1000,
        description="Records threadlink has never seen that one message may have looked up; others get no card.",
    )


class StreamSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app_id: str = Field(default="threadlink-streams", description="Faust app id: consumer group and table names.")
    web_port: int = Field(default=6066, ge=0, le=65535, description="Faust's web server (its /metrics).")
    web_host: str = Field(
        default="127.0.0.1",
        description="Where Faust's web server listens (0.0.0.0 in a container, so Prometheus can scrape it).",
    )
    mention_patterns: list[MentionPattern] = Field(
        default_factory=lambda: [MentionPattern(system="jira", regex=r"\b[A-Z][A-Z0-9]{1,9}-[1-9][0-9]{0,8}\b")],
        description="Which words in a message name a record, and in which system.",
    )
    state_dir: str = Field(
        default=".run/streams",
        description="Where the worker keeps its tables (RocksDB), so a restart reads only what changed.",
    )
    follow: FollowSettings = Field(default_factory=FollowSettings)
    escalate: EscalateSettings = Field(default_factory=EscalateSettings)
    know: KnowSettings = Field(default_factory=KnowSettings)
    reach: ReachSettings = Field(default_factory=ReachSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)


class ConnectorEntry(BaseModel):
    """`type` picks the plugin (default: the entry's name); the rest is the plugin's config."""

    model_config = ConfigDict(extra="allow")

    type: str | None = None
    enabled: bool = True

    def plugin_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="THREADLINK_", env_nested_delimiter="__", extra="forbid")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    streams: StreamSettings = Field(default_factory=StreamSettings)
    connectors: dict[str, ConnectorEntry] = Field(default_factory=dict)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text: a line per record; json: one JSON object per line, with the event and trace ids "
        "of what is being handled (for a log pipeline).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the file, the file beats defaults.
        return (env_settings, init_settings)


def config_path(explicit: str | Path | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.exists() else None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (kafka:, connectors:, ...)")
    return doc


def format_errors(source: str, error: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[str]:
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in (*prefix, *problem["loc"])) or "(top level)"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown setting (check the spelling; the README's Configuration section lists them)"
        elif problem["type"] == "missing":
            message = "required setting is missing"
        # Never echo the input: it may be a secret.
        lines.append(f"{source}: {where}: {message}")
    return lines


def load_settings(path: str | Path | None = None) -> Settings:
    """Read, merge and validate; raise ConfigError listing every problem (connectors included)."""
    file = config_path(path)
    doc = _read_yaml(file) if file else {}
    source = str(file) if file else "environment"
    problems: list[str] = []
    settings: Settings | None = None
    try:
        settings = Settings(**doc)
    except ValidationError as exc:
        problems += [line for line in format_errors(source, exc) if ": connectors." not in line]
    connectors = settings.connectors if settings else _raw_connectors(doc.get("connectors"))
    for name, entry in connectors.items():
        problems += _connector_problems(source, name, entry)
    if settings is not None:
        known = set(settings.connectors)
        for index, pattern in enumerate(settings.streams.mention_patterns):
            if known and pattern.system not in known:
                problems.append(
                    f"{source}: streams.mention_patterns.{index}.system: {pattern.system!r} is not "
                    "a configured connector"
                )
        for where, target in (
            ("escalate.target", settings.streams.escalate.target),
            ("know.draft_target", settings.streams.know.draft_target),
        ):
            if target is not None and target not in known:
                problems.append(f"{source}: streams.{where}: {target!r} is not a configured connector")
        problems += _reach_problems(source, settings.streams, known)
    if problems or settings is None:
        if file is not None:
            problems = located(problems, source, yaml_positions(file.read_text()))
        raise ConfigError("\n".join(problems))
    return settings


def yaml_positions(text: str) -> dict[tuple[str, ...], tuple[int, int]]:
    """Where each setting of a YAML document is: its dotted path (list items by index) ->
    (line, column), 1-based, of its key (or of the item)."""
    positions: dict[tuple[str, ...], tuple[int, int]] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return positions
    todo: list[tuple[tuple[str, ...], Any]] = [((), root)]
    while todo and len(positions) < 100_000:
        path, node = todo.pop()
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                where = (*path, str(key.value))
                positions[where] = (key.start_mark.line + 1, key.start_mark.column + 1)
                todo.append((where, value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                where = (*path, str(index))
                positions[where] = (item.start_mark.line + 1, item.start_mark.column + 1)
                todo.append((where, item))
    return positions


def located(problems: list[str], source: str, positions: dict[tuple[str, ...], tuple[int, int]]) -> list[str]:
    """`file: a.b.c: why` becomes `file:line:column: a.b.c: why`, at the setting or, for one that
    is missing, at the nearest enclosing one that is there."""
    out = []
    head = f"{source}: "
    for problem in problems:
        where, sep, why = problem.removeprefix(head).partition(": ")
        parts = tuple(where.split("."))
        found = next((positions[parts[:n]] for n in range(len(parts), 0, -1) if parts[:n] in positions), None)
        if not problem.startswith(head) or not sep or found is None:
            out.append(problem)
        else:
            out.append(f"{source}:{found[0]}:{found[1]}: {where}: {why}")
    return out


def _reach_problems(source: str, streams: StreamSettings, known: set[str]) -> list[str]:
    problems = []
    reach = streams.reach
    places: list[tuple[str, NoticePlace | Person]] = [
        (f"rules.{i}.notify.{j}", place) for i, rule in enumerate(reach.rules) for j, place in enumerate(rule.notify)
    ]
    places += [
        (f"rules.{i}.subscribe.{j}", person)
        for i, rule in enumerate(reach.rules)
        for j, person in enumerate(rule.subscribe)
    ]
    places += [
        (f"first_answer.{i}.steps.{j}.notify.{k}", place)
        for i, tier in enumerate(reach.first_answer)
        for j, step in enumerate(tier.steps)
        for k, place in enumerate(step.notify)
    ]
    for where, place in places:
        if place.platform not in known:
            problems.append(
                f"{source}: streams.reach.{where}.platform: {place.platform!r} is not a configured connector"
            )
    escalating = [f"rules.{i}.escalate" for i, rule in enumerate(reach.rules) if rule.escalate]
    escalating += [
        f"first_answer.{i}.steps.{j}.escalate"
        for i, tier in enumerate(reach.first_answer)
        for j, step in enumerate(tier.steps)
        if step.escalate
    ]
    if streams.escalate.target is None:
        problems += [
            f"{source}: streams.reach.{where}: needs streams.escalate.target (the ticketing connector)"
            for where in escalating
        ]
    return problems


def _raw_connectors(value: Any) -> dict[str, ConnectorEntry]:
    if not isinstance(value, dict):
        return {}
    entries = {}
    for name, fields in value.items():
        try:
            entries[str(name)] = ConnectorEntry.model_validate(fields or {})
        except ValidationError:
            continue
    return entries


def _connector_problems(source: str, name: str, entry: ConnectorEntry) -> list[str]:
    from connectors.registry import PLUGINS, plugin_for  # the registry knows each connector's config model

    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        return [f"{source}: connectors.{name}: connector names are lower-case words (they name topics)"]
    plugin = plugin_for(entry.type or name)
    if plugin is None:
        return [
            f"{source}: connectors.{name}.type: unknown connector type {entry.type or name!r}; "
            f"known: {', '.join(sorted(PLUGINS))}"
        ]
    try:
        plugin.config_model.model_validate(entry.plugin_fields())
    except ValidationError as exc:
        return format_errors(source, exc, ("connectors", name))
    return []


def connector_config(settings: Settings, name: str) -> Any:
    """The validated plugin config of connector `name` (load_settings already checked it)."""
    from connectors.registry import plugin_for

    entry = settings.connectors[name]
    plugin = plugin_for(entry.type or name)
    assert plugin is not None
    return plugin.config_model.model_validate(entry.plugin_fields())
