"""Configuration of one MQTT broker connection and how its messages become records."""

from __future__ import annotations

import socket
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from connectors.mqtt.mapping import RECORD_FIELDS, Template, TopicPattern
from connectors.runtime.shopfloor import DEFAULT_TITLES
from schemas.visibility import Visibility


class MqttMapping(BaseModel):
    """Which topics make which records, and how each field is read.

    Templates hold `{...}` references: a topic capture (`{plant}`), the payload (`{payload}`),
    or a path into its JSON (`{payload.status}`, `{payload.metrics.0.value}`,
    `{payload.metrics[name=State].value}`). A missing payload value dead-letters the message,
    unless the reference ends in `?` (`{payload.reason?}`): then the field is left unset.
    Example::

        - topic: plant/{plant}/line/{line}/order/{order}/status
          kind: production_order
          key: "{order}"
          fields: {plant: "{plant}", line: "{line}", status: "{payload.status}", updated_at: "{payload.ts}"}
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str = Field(
        description="Topic pattern: `{name}` captures one level, `+` matches one, a last `#` the rest. "
        "Subscribed to with every capture as `+`."
    )
    kind: Literal["production_order", "machine_state"] = Field(description="The kind of record it makes.")
    key: str = Field(description="Template of the record's key (its id is `<connector>:<key>`), e.g. `{order}`.")
    title: str | None = Field(
        default=None,
        description="Template of the card's title; `{key}` is the key. Default: `Order {key}` or `Machine {key}`.",
    )
    url: str | None = Field(default=None, description="Template of a link to the record in the MES (optional).")
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Record field -> template. production_order: plant, line, status, product, quantity, due_at, "
        "updated_at, version; machine_state: plant, line, machine, state, reason, order, updated_at, version.",
    )
    epoch_unit: Literal["ms", "s"] = Field(
        default="ms", description="Unit of numeric times in the payload (Sparkplug sends epoch milliseconds)."
    )
    visibility: Visibility = Field(default="internal", description="Who may see these records.")

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        TopicPattern.parse(value)
        return value

    @model_validator(mode="after")
    def _templates(self) -> MqttMapping:
        problems: list[str] = []
        captures = TopicPattern.parse(self.topic).names
        known = RECORD_FIELDS[self.kind]

        def check(where: str, source: str, extra: frozenset[str] = frozenset()) -> None:
            try:
                template = Template.parse(source)
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                return
            for reference in template.references:
                if reference.capture is not None and reference.capture not in captures | extra:
                    problems.append(
                        f"{where}: {{{reference.capture}}} is not captured by the topic pattern "
                        f"(captures: {', '.join(sorted(captures)) or 'none'})"
                    )

        check("key", self.key)
        check("title", self.title or DEFAULT_TITLES[self.kind], frozenset({"key"}))
        if self.url is not None:
            check("url", self.url)
        for name, source in self.fields.items():
            if name not in known:
                problems.append(f"fields.{name}: not a field of a {self.kind} record; known: {', '.join(known)}")
            else:
                check(f"fields.{name}", source)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @cached_property
    def pattern(self) -> TopicPattern:
        return TopicPattern.parse(self.topic)

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

    @cached_property
    def reads_payload(self) -> bool:
        """Whether a template reads a path into the payload, which must then be JSON (`{payload}`
        alone also takes plain text)."""
        templates: list[Template] = [self.key_template, self.title_template, *self.field_templates.values()]
        if self.url_template:
            templates.append(self.url_template)
        return any(r.path for t in templates for r in t.references)


class MqttConfig(BaseModel):
    """One MQTT broker (MQTT 5). Example (threadlink.yaml; the password better from the
    environment, THREADLINK_CONNECTORS__MES__PASSWORD)::

        connectors:
          mes:
            type: mqtt
            host: mqtt.plant.example
            port: 8883
            tls: true
            username: threadlink
            mappings:
              - topic: plant/{plant}/line/{line}/order/{order}/status
                kind: production_order
                key: "{order}"
                fields: {plant: "{plant}", line: "{line}", status: "{payload.status}"}
    """

    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1, description="The broker's host name or address.")
    port: int = Field(default=1883, ge=1, le=65535, description="1883 for plain MQTT, usually 8883 with TLS.")
    tls: bool = Field(default=False, description="Connect with TLS (the system's CA certificates, or ca_file).")
    ca_file: str | None = Field(default=None, description="A CA bundle to verify the broker's certificate with.")
    username: str | None = Field(default=None, description="User name, when the broker asks for one.")
    password: SecretStr | None = Field(default=None, description="Password of that user.")
    client_id: str | None = Field(
        default=None,
        description="The MQTT client id: the broker keeps this replica's session (its subscriptions and the "
        "messages queued while it is away) under it, so it must stay the same across restarts and differ "
        "between replicas. Default: threadlink-<connector>-<host name> (stable in a StatefulSet).",
    )
    shared_group: str | None = Field(
        default="threadlink",
        description="Subscribe as `$share/<group>/<filter>`: the broker hands each message to one replica of the "
        "group, so N replicas do not publish it N times. null: plain subscriptions (run one replica only).",
    )
    session_expiry_s: int = Field(
        default=86_400,
        ge=60,
        le=4_294_967_294,
        description="How long the broker keeps the session and queues messages while threadlink is away.",
    )
    receive_maximum: int = Field(
        default=1000,
        ge=1,
        le=65_535,
        description="Messages the broker may send before threadlink acknowledges them (after Kafka has them): "
        "bounds what waits in memory.",
    )
    keepalive_s: int = Field(default=30, ge=5, le=65_535, description="MQTT keep-alive interval, in seconds.")
    max_payload_bytes: int = Field(
        default=65_536,
        ge=64,
        le=600_000,
        description="Larger payloads go to the dead-letter topic unread (their first max_payload_bytes kept).",
    )
    mappings: list[MqttMapping] = Field(
        min_length=1, description="Topic patterns and how their messages become records; the first that matches."
    )

    @field_validator("shared_group")
    @classmethod
    def _group(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c in value for c in "/+#")):
            raise ValueError("a share group name is a non-empty word without /, + or #")
        return value

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty (leave it out for threadlink-<connector>-<host name>)")
        return value

    def client_id_for(self, connector: str) -> str:
        return self.client_id or f"threadlink-{connector}-{socket.gethostname()}"

    def subscriptions(self) -> list[str]:
        """The topic filters to subscribe to, each once, in mapping order."""
        filters = dict.fromkeys(m.pattern.subscription for m in self.mappings)
        prefix = f"$share/{self.shared_group}/" if self.shared_group else ""
        return [prefix + f for f in filters]
