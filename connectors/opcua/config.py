"""Configuration of one OPC UA server connection and how its variables become records."""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from connectors.opcua.mapping import RECORD_FIELDS, NodePath, Template
from connectors.runtime.shopfloor import DEFAULT_TITLES
from schemas.visibility import Visibility


class OpcuaMapping(BaseModel):
    """One node (or a browse path pattern of nodes) and the record field its value sets.

    Example (every press's State under any line, one machine_state record per press)::

        - node: "0:Objects/2:Plant/2:{line}/2:{machine}/2:State"
          kind: machine_state
          key: "{line}-{machine}"
          field: state
          fields: {plant: "p1", line: "{line}", machine: "{machine}"}
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: str = Field(
        description="A node id (`ns=2;s=Line1.Press3.State`) or a browse path from Root "
        "(`0:Objects/2:Plant/2:Line1/2:Press3/2:State`) whose levels may capture (`2:{machine}`: every "
        "child in namespace 2, its browse name captured)."
    )
    kind: Literal["production_order", "machine_state"] = Field(description="The kind of record it makes.")
    key: str = Field(description="Template of the record's key (its id is `<connector>:<key>`), e.g. `{machine}`.")
    field: str = Field(
        description="The record field the node's value sets. production_order: plant, line, status, product, "
        "quantity, due_at (a DateTime node); machine_state: plant, line, machine, state, reason, order."
    )
    values: dict[str, str] | None = Field(
        default=None,
        description="Translate the value first, e.g. an enumeration {'0': idle, '1': running, '2': down}; a value "
        "not listed is dead-lettered.",
    )
    fields: dict[str, str] = Field(
        default_factory=dict, description="Other record fields -> template over the captures, e.g. line: '{line}'."
    )
    title: str | None = Field(
        default=None,
        description="Template of the card's title; `{key}` is the key. Default: `Order {key}` or `Machine {key}`.",
    )
    url: str | None = Field(default=None, description="Template of a link to the record in the MES (optional).")
    visibility: Visibility = Field(default="internal", description="Who may see these records.")

    @field_validator("node")
    @classmethod
    def _node(cls, value: str) -> str:
        NodePath.parse(value)
        return value

    @model_validator(mode="after")
    def _templates(self) -> OpcuaMapping:
        problems: list[str] = []
        captures = NodePath.parse(self.node).names
        known = RECORD_FIELDS[self.kind]

        def check(where: str, source: str, extra: frozenset[str] = frozenset()) -> None:
            try:
                template = Template.parse(source)
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                return
            for name in template.names:
                if name not in captures | extra:
                    problems.append(
                        f"{where}: {{{name}}} is not captured by the node's browse path "
                        f"(captures: {', '.join(sorted(captures)) or 'none'})"
                    )

        if self.field not in known:
            problems.append(f"field: {self.field!r} is not a field of a {self.kind} record; known: {', '.join(known)}")
        check("key", self.key)
        check("title", self.title or DEFAULT_TITLES[self.kind], frozenset({"key"}))
        if self.url is not None:
            check("url", self.url)
        for name, source in self.fields.items():
            if name not in known:
                problems.append(f"fields.{name}: not a field of a {self.kind} record; known: {', '.join(known)}")
            elif name == self.field:
                problems.append(f"fields.{name}: is the field the node's value sets")
            elif known[name] != "text":
                problems.append(f"fields.{name}: a {known[name]} field comes from a node, not a template")
            else:
                check(f"fields.{name}", source)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @cached_property
    def path(self) -> NodePath:
        return NodePath.parse(self.node)

    @cached_property
    def key_template(self) -> Template:
        return Template.parse(self.key)

    @cached_property
    def title_template(self) -> Template:
        return Template.parse(self.title or DEFAULT_TITLES[self.kind])

    @cached_property
    def url_template(self) -> Template | None:
        return Template.parse(self.url) if self.url else None

    @cached_property
    def field_templates(self) -> dict[str, Template]:
        return {name: Template.parse(source) for name, source in self.fields.items()}


class OpcuaConfig(BaseModel):
    """One OPC UA server. Example (threadlink.yaml; a password better from the environment,
    THREADLINK_CONNECTORS__PRESSES__PASSWORD)::

        connectors:
          presses:
            type: opcua
            endpoint: opc.tcp://127.0.0.1:4840/plant/
            mappings:
              - node: "ns=2;s=Line1.Press3.State"
                kind: machine_state
                key: press-3
                field: state
    """

    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(description="The server's endpoint URL, opc.tcp://host:port/path.")
    security: Literal["none"] = Field(
        default="none",
        description="Message security. Only `none` (no signing or encryption) is supported: use it on "
        "loopback or a segregated plant network; see docs/connectors/opcua.md.",
    )
    username: str | None = Field(default=None, description="User name, when the server asks for one.")
    password: SecretStr | None = Field(default=None, description="Password of that user.")
    publishing_interval_ms: float = Field(
        default=500, ge=10, le=60_000, description="How often the server sends the changes it collected."
    )
    sampling_interval_ms: float = Field(
        default=100, ge=0, le=60_000, description="How often the server samples each node (0: as fast as it can)."
    )
    request_timeout_s: float = Field(default=5, gt=0, le=120, description="Each request's answer time limit.")
    watchdog_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="How often the connection's health is probed (a dead server is noticed)."
    )
    session_timeout_s: float = Field(
        default=60,
        ge=10,
        le=3_600,
        description="How long the server keeps threadlink's session (and its subscription) after it stops "
        "hearing from it; a new connection always opens a new session.",
    )
    queue_size: int = Field(
        default=10_000,
        ge=10,
        le=1_000_000,
        description="Changes buffered between the client and the publisher; when full the oldest are dropped "
        "(the latest value of every node is kept, and read again after a reconnect).",
    )
    max_nodes: int = Field(
        default=5_000, ge=1, le=100_000, description="Most nodes the browse path patterns may resolve to."
    )
    mappings: list[OpcuaMapping] = Field(min_length=1, description="Nodes and how their values become records.")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if not value.startswith("opc.tcp://") or len(value) <= len("opc.tcp://"):
            raise ValueError("an OPC UA endpoint looks like opc.tcp://host:4840/path")
        if "@" in value.split("/")[2]:
            raise ValueError("put the credentials in username and password, not in the URL")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> OpcuaConfig:
        if self.password is not None and self.username is None:
            raise ValueError("password: set username too (a password alone is not sent)")
        return self
