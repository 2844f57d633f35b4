"""The envelope every event on Kafka travels in: a CloudEvents 1.0 structured-mode JSON event.

Python names are descriptive (`occurred_at`); on the wire they are CloudEvents attribute names
(`time`) and lower-case extension attributes (`receivedat`, `sourcesystem`, `schemaversion`,
`visibility`, `traceparent`), so other CloudEvents tooling reads our topics without adapters.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from schemas.trace import child_traceparent
from schemas.visibility import Visibility

#: Bump the minor for additive changes, the major for breaking ones (see schemas/compat.py).
SCHEMA_VERSION = "2.6"

CONTENT_TYPE = "application/cloudevents+json"

DataT = TypeVar("DataT")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel, Generic[DataT]):
    """A CloudEvents 1.0 event (structured mode) carrying one threadlink payload in `data`."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(description="Unique per event. Platform events reuse the platform's id, so redeliveries share it.")
    source: str = Field(description="URI reference of the producer, e.g. /connectors/slack/T0001.")
    type: str = Field(description="Reverse-DNS event type, e.g. io.threadlink.social.message.posted.")
    subject: str | None = Field(default=None, description="The Kafka key of the event (thread id, record id).")
    occurred_at: datetime = Field(alias="time", description="When it happened on the platform.")
    received_at: datetime = Field(
        default_factory=utcnow, alias="receivedat", description="When threadlink received it."
    )
    source_system: str = Field(alias="sourcesystem", description="Connector name the event came from, e.g. slack.")
    schema_version: str = Field(default=SCHEMA_VERSION, alias="schemaversion")
    visibility: Visibility = Field(default="internal")
    traceparent: str | None = Field(default=None, description="W3C trace context of the hop that produced it.")
    datacontenttype: Literal["application/json"] = "application/json"
    data: DataT

    @classmethod
    def wrap(
        cls,
        data: DataT,
        *,
        type: str,
        source_system: str,
        subject: str | None = None,
        id: str | None = None,
        occurred_at: datetime | None = None,
        received_at: datetime | None = None,
        visibility: Visibility = "internal",
        parent_traceparent: str | None = None,
    ) -> Envelope[DataT]:
        """A new event. What streams derive from an event keeps its `occurred_at` and
        `received_at`, so decisions made by event time come out the same when reprocessed."""
        now = utcnow()
        return cls(
            id=id or str(uuid.uuid4()),
            source=f"/threadlink/{source_system}",
            type=type,
            subject=subject,
            occurred_at=occurred_at or now,
            received_at=received_at or now,
            source_system=source_system,
            visibility=visibility,
            traceparent=child_traceparent(parent_traceparent),
            data=data,
        )

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        headers = [("content-type", CONTENT_TYPE.encode())]
        if self.traceparent:
            headers.append(("traceparent", self.traceparent.encode()))
        return headers


def envelope_type_of(value: bytes | str | dict[str, Any]) -> str | None:
    """Peek at an event's type without validating its data (routing, dead-lettering)."""
    import json

    try:
        doc = value if isinstance(value, dict) else json.loads(value)
        return doc.get("type")
    except (ValueError, AttributeError):
        return None
