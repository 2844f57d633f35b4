"""Records of the core systems: tickets, articles, production orders, machine states, and the
comments on them.

Every kind shares one base (`RecordBase`): what it is (`ref`), what to call it (`title`, `url`),
how new it is (`version`), who may see it (`visibility`), and what a card shows (`fields`, a
small ordered list of labelled values). Cards, the Follow flow and the record table work on the
base alone, so a new kind needs no change in streams/ or in any social connector.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from schemas.visibility import Visibility

#: A card shows at most this many fields.
MAX_FIELDS = 8
#: Display values longer than this are cut (a card is a glance, not the record).
MAX_FIELD_VALUE = 200
#: An article body kept for search; the rest is cut.
MAX_BODY = 20_000


def version_of(moment: datetime | None) -> int:
    """The version a change at `moment` gets when its system has no counter of its own: epoch
    milliseconds, so versions from webhooks and from REST look-ups of the same system compare."""
    if moment is None:
        return 0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0, int(moment.timestamp() * 1000))


class RecordRef(BaseModel):
    """A record in a core system. `id` is its Kafka key."""

    system: str = Field(description="Connector name, e.g. jira.")
    key: str = Field(description="The record's key in that system, e.g. PROJ-123.")

    @property
    def id(self) -> str:
        return f"{self.system}:{self.key}"


class DisplayField(BaseModel):
    """One labelled value on a card, e.g. Status: In Progress."""

    name: str = Field(description="Stable machine name (status, assignee, ...): what Follow compares.")
    label: str = Field(description="What the card shows as the label.")
    value: str = Field(max_length=MAX_FIELD_VALUE)


class RecordBase(BaseModel):
    """What every kind of record has."""

    ref: RecordRef
    title: str
    url: str | None = None
    version: int = Field(
        default=0,
        ge=0,
        description="Grows with every change of the record in its system (its update time in epoch milliseconds "
        "unless the system counts versions itself). An event with a lower version than the stored one is stale.",
    )
    updated_at: datetime | None = None
    visibility: Visibility = "internal"
    fields: list[DisplayField] = Field(
        default_factory=list,
        max_length=MAX_FIELDS,
        description="What a card shows, in order. Left empty, each kind fills in its usual fields.",
    )

    @model_validator(mode="after")
    def _default_fields(self) -> RecordBase:
        if not self.fields:
            self.fields = [
                DisplayField(name=name, label=label, value=clip_value(value))
                for name, label, value in self.default_fields()
                if value
            ][:MAX_FIELDS]
        return self

    def default_fields(self) -> list[tuple[str, str, str | None]]:
        """(name, label, value) of the fields a card of this kind shows by default."""
        return []

    def field_value(self, name: str) -> str | None:
        return next((f.value for f in self.fields if f.name == name), None)

    def card_digest(self) -> str:
        """Changes exactly when what a card shows changes (a card needs no update otherwise)."""
        shown = [self.title, self.url or "", self.visibility, *(f"{f.label}={f.value}" for f in self.fields)]
        return hashlib.sha256("\x1f".join(shown).encode()).hexdigest()[:16]


def clip_value(value: str) -> str:
    """A card value on one line, at most MAX_FIELD_VALUE characters."""
    value = " ".join(value.split())
    return value if len(value) <= MAX_FIELD_VALUE else value[: MAX_FIELD_VALUE - 1] + "…"


class TicketRecord(RecordBase):
    """A support ticket or development issue (Jira, Zendesk, Redmine, GitHub)."""

    kind: Literal["ticket"] = "ticket"
    project: str | None = None
    status: str | None = None
    assignee: str | None = None
    priority: str | None = None
    labels: list[str] = Field(default_factory=list)

    def default_fields(self) -> list[tuple[str, str, str | None]]:
        return [
            ("status", "Status", self.status),
            ("assignee", "Assignee", self.assignee or "Unassigned"),
            ("priority", "Priority", self.priority),
        ]


class ArticleRecord(RecordBase):
    """A page or post of a content management system (WordPress, ...)."""

    kind: Literal["article"] = "article"
    status: str | None = Field(default=None, description="publish, draft, private, ...")
    excerpt: str = ""
    body: str = Field(default="", max_length=MAX_BODY, description="Plain text, for search (the Know flow).")
    categories: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)

    def default_fields(self) -> list[tuple[str, str, str | None]]:
        return [
            ("excerpt", "Summary", self.excerpt or None),
            ("categories", "Categories", ", ".join(self.categories) or None),
        ]


class ProductionOrderRecord(RecordBase):
    """A production order on the shop floor (MES over MQTT or OPC UA)."""

    kind: Literal["production_order"] = "production_order"
    plant: str | None = None
    line: str | None = None
    status: str | None = Field(default=None, description="planned, running, delayed, done, ...")
    product: str | None = None
    quantity: str | None = Field(default=None, description="As the line reports it, e.g. '480/500 pcs'.")
    due_at: datetime | None = None

    def default_fields(self) -> list[tuple[str, str, str | None]]:
        return [
            ("status", "Status", self.status),
            ("line", "Line", "/".join(part for part in (self.plant, self.line) if part) or None),
            ("product", "Product", self.product),
            ("quantity", "Quantity", self.quantity),
            ("due", "Due", self.due_at.strftime("%Y-%m-%d %H:%M UTC") if self.due_at else None),
        ]


class MachineStateRecord(RecordBase):
    """The state of a machine on the shop floor."""

    kind: Literal["machine_state"] = "machine_state"
    plant: str | None = None
    line: str | None = None
    machine: str | None = None
    state: str | None = Field(default=None, description="running, idle, down, maintenance, ...")
    reason: str | None = None
    order: str | None = Field(default=None, description="Key of the production order it works on.")

    def default_fields(self) -> list[tuple[str, str, str | None]]:
        return [
            ("status", "State", self.state),
            ("reason", "Reason", self.reason),
            ("order", "Order", self.order),
        ]


Record = Annotated[
    TicketRecord | ArticleRecord | ProductionOrderRecord | MachineStateRecord, Field(discriminator="kind")
]
"""Any kind of record; `kind` tells which."""

RECORD_KINDS: tuple[str, ...] = ("ticket", "article", "production_order", "machine_state")


class RecordMissing(BaseModel):
    """A record does not exist (deleted, or never existed, or threadlink may not see it)."""

    kind: Literal["missing"] = "missing"
    ref: RecordRef
    reason: str
    version: int = Field(
        default=0,
        ge=0,
        description="When the deletion happened (as RecordBase.version); 0 when a look-up found nothing. "
        "A missing event older than the stored record is stale and ignored.",
    )


RecordEvent = Annotated[
    TicketRecord | ArticleRecord | ProductionOrderRecord | MachineStateRecord | RecordMissing,
    Field(discriminator="kind"),
]
"""What the records topic carries: a record's latest state, or that it is missing."""


class RecordComment(BaseModel):
    """A comment added to (or edited on, or deleted from) a record."""

    ref: RecordRef
    comment_id: str
    action: Literal["added", "edited", "deleted"] = "added"
    author: str | None = None
    body: str = ""
    public: bool = Field(
        default=True,
        description="False for an internal note (an agent-only remark, a restricted comment): never shown on a "
        "social platform, whatever its visibility.",
    )
    visibility: Visibility = "internal"
    by_threadlink: bool = Field(
        default=False, description="Written by threadlink itself (back-links, mirrored replies): never mirrored back."
    )
    created_at: datetime | None = None
    version: int = Field(default=0, ge=0, description="As RecordBase.version, of the comment.")


def record_ref_of(data: Any) -> RecordRef | None:
    """The record a command or event is about, when it names one."""
    ref = getattr(data, "ref", None) or getattr(data, "record", None)
    if isinstance(ref, RecordBase):
        return ref.ref
    return ref if isinstance(ref, RecordRef) else None
