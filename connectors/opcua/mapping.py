"""OPC UA data values to production records, by configuration alone.

A mapping names a node, by node id (`ns=2;s=Line1.Press3.State`) or by browse path from the
Root folder (`0:Objects/2:Plant/2:Line1/2:Press3/2:State`), where a level may be a capture
(`2:{machine}`: every child in namespace 2, its browse name captured as `machine`). The value
sets one record field; the other fields are templates over the captures. Nothing here knows a
plant: a new line or machine is a config change.

Several nodes may make one record (State and Reason of one press): the source keeps the latest
value of each and publishes the whole record on each change (`RecordState`).

Pure functions, no I/O: `MappingFailed` says why a value cannot become a record (a Bad status,
a value of the wrong type); the source dead-letters it with that reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from connectors.errors import SkippableError
from connectors.runtime.shopfloor import RECORD_MODELS, SHOPFLOOR_FIELDS, TIME
from connectors.runtime.shopfloor import plain_text as _as_plain
from schemas.records import MachineStateRecord, ProductionOrderRecord, RecordRef, version_of

if TYPE_CHECKING:
    from connectors.opcua.config import OpcuaMapping

#: Record fields a mapping may fill, by kind, and how each value is read: a record's time and
#: version come from the source timestamp, never from a mapping.
RECORD_FIELDS: dict[str, dict[str, str]] = {
    kind: {name: how for name, how in fields.items() if name not in ("updated_at", "version")}
    for kind, fields in SHOPFLOOR_FIELDS.items()
}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
#: `ns=2;s=...`, `ns=2;i=42`, `i=2253`, `nsu=urn:...;s=...`: what asyncua's NodeId.from_string reads.
_NODE_ID = re.compile(r"^(ns=\d+;|nsu=[^;]+;)?[isgb]=.+$", re.DOTALL)
_LEVEL = re.compile(r"^(\d+):(.+)$")


class MappingFailed(SkippableError):
    """This value can never become a record under this mapping (the reason says why)."""


# -- node paths ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    """One level of a browse path: a browse name in a namespace, or a capture of any child's."""

    namespace: int
    name: str | None
    capture: str | None

    def text(self) -> str:
        return f"{self.namespace}:{self.name if self.capture is None else '{' + self.capture + '}'}"


@dataclass(frozen=True)
class NodePath:
    """A node id (`ns=2;s=A.B`) or a browse path from Root (`0:Objects/2:Plant/2:{machine}/2:State`)."""

    source: str
    node_id: str | None
    levels: tuple[Level, ...]

    @classmethod
    def parse(cls, source: str) -> NodePath:
        """Raises ValueError saying what is wrong."""
        text = source.strip()
        if not text:
            raise ValueError("a node is a node id (ns=2;s=Line1.Press3.State) or a browse path (0:Objects/2:Plant/...)")
        if _NODE_ID.match(text):
            if "{" in text:
                raise ValueError("a node id cannot capture; use a browse path for a pattern (2:{machine})")
            return cls(text, text, ())
        levels: list[Level] = []
        names: set[str] = set()
        for index, part in enumerate(text.strip("/").split("/")):
            found = _LEVEL.match(part)
            if found is None:
                raise ValueError(
                    f"level {index + 1}: {part!r} is not <namespace index>:<browse name> (e.g. 2:Press3); "
                    "a node id looks like ns=2;s=Line1.Press3.State"
                )
            namespace, name = int(found.group(1)), found.group(2)
            if name.startswith("{") and name.endswith("}"):
                capture = name[1:-1]
                if not _NAME.fullmatch(capture) or capture in ("value", "key"):
                    raise ValueError(f"level {index + 1}: {name!r} is not a capture; use {{word}} (not value or key)")
                if capture in names:
                    raise ValueError(f"level {index + 1}: {{{capture}}} is captured twice")
                names.add(capture)
                levels.append(Level(namespace, None, capture))
            elif "{" in name or "}" in name:
                raise ValueError(f"level {index + 1}: {name!r} mixes a capture with text")
            else:
                levels.append(Level(namespace, name, None))
        return cls(text, None, tuple(levels))

    @property
    def names(self) -> set[str]:
        return {level.capture for level in self.levels if level.capture is not None}


# -- templates ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """Text with `{capture}` references (`{machine}`, `Press {machine} on {line}`)."""

    source: str
    names: tuple[str, ...]

    @classmethod
    def parse(cls, source: str) -> Template:
        names = []
        for found in _PLACEHOLDER.finditer(source):
            if not _NAME.fullmatch(found.group(1)):
                raise ValueError(f"{{{found.group(1)}}} is not a capture ({{machine}})")
            names.append(found.group(1))
        if "{" in _PLACEHOLDER.sub("", source) or "}" in _PLACEHOLDER.sub("", source):
            raise ValueError(f"{source!r}: an unmatched brace")
        return cls(source, tuple(names))

    def render(self, captures: Mapping[str, str]) -> str:
        return _PLACEHOLDER.sub(lambda found: captures[found.group(1)], self.source)


# -- values and records ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """One data value of one node, as the server sent it (asyncua-free, for tests)."""

    node_id: str
    value: Any
    status: str
    """`Good`, or the status code's name (`BadSensorFailure`, `UncertainLastUsableValue`)."""
    good: bool
    source_timestamp: datetime | None
    server_timestamp: datetime | None

    @property
    def moment(self) -> datetime | None:
        """When the value changed: the source timestamp, else the server's."""
        return self.source_timestamp or self.server_timestamp


def field_value(mapping: OpcuaMapping, reading: Reading) -> Any:
    """The value `reading` gives the mapping's field. Raises MappingFailed with the reason."""
    if not reading.good:
        raise MappingFailed(f"{reading.node_id}: the server reports status {reading.status}, not Good")
    value = reading.value
    if value is None:
        raise MappingFailed(f"{reading.node_id}: the value is empty (null)")
    value = getattr(value, "Text", value)  # LocalizedText: its text
    if mapping.values:
        plain = _as_plain(value)
        if plain is None or plain not in mapping.values:
            known = ", ".join(mapping.values)
            raise MappingFailed(f"{reading.node_id}: value {_show(value)} is not one of `values` ({known})")
        value = mapping.values[plain]
    kind = RECORD_FIELDS[mapping.kind][mapping.field]
    if kind == TIME:
        if not isinstance(value, datetime):
            raise MappingFailed(f"{reading.node_id}: got {_kind(value)} {_show(value)}, expected a DateTime")
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = _as_plain(value)
    if text is None:
        raise MappingFailed(f"{reading.node_id}: got {_kind(value)} {_show(value)}, expected a text or number")
    return text


@dataclass
class RecordState:
    """The latest value of every node that makes one record, so each change publishes all of it."""

    mapping: OpcuaMapping
    key: str
    captures: dict[str, str]
    values: dict[str, Any] = field(default_factory=dict)
    moments: dict[str, datetime] = field(default_factory=dict)

    def apply(self, mapping: OpcuaMapping, captures: Mapping[str, str], value: Any, moment: datetime) -> None:
        self.captures.update(captures)
        self.values[mapping.field] = value
        self.moments[mapping.field] = moment
        for name, template in mapping.field_templates.items():
            self.values.setdefault(name, template.render(captures))

    def record(self, system: str) -> ProductionOrderRecord | MachineStateRecord:
        """Versioned by the newest source timestamp among its nodes: a value published again
        (after a reconnect, by a second replica) is the same record with the same version."""
        updated_at = max(self.moments.values())
        captures = {**self.captures, "key": self.key}
        mapping = self.mapping
        try:
            return RECORD_MODELS[mapping.kind](
                ref=RecordRef(system=system, key=self.key),
                title=mapping.title_template.render(captures) or self.key,
                url=mapping.url_template.render(captures) if mapping.url_template else None,
                visibility=mapping.visibility,
                updated_at=updated_at,
                version=version_of(updated_at),
                **self.values,
            )
        except ValueError as exc:  # pydantic's ValidationError: a value the record refuses (too long, ...)
            raise MappingFailed(f"the record is not valid: {exc}") from None


def _show(value: Any) -> str:
    return repr(value)[:40]


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, bytes | bytearray):
        return "a ByteString"
    return f"a {type(value).__name__}"
