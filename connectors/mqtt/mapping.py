"""MQTT messages to production records, by configuration alone.

A mapping names a topic pattern whose `{name}` segments capture values (`plant/{plant}/line/
{line}/order/{order}/status`) and fills record fields from templates over those names and the
JSON payload (`{payload.status}`, `{payload.metrics[name=State].value}`). Nothing here knows
a plant: a new plant or a new topic layout is a config change.

Pure functions, no I/O: `MappingFailed` says why a message cannot become a record (bad JSON, a
missing or mistyped field); the source dead-letters it with that reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from connectors.errors import SkippableError
from connectors.runtime.payloads import InvalidPayload, epoch_time, parse_json
from connectors.runtime.shopfloor import NUMBER, RECORD_MODELS, SHOPFLOOR_FIELDS, TIME
from connectors.runtime.shopfloor import plain_text as _as_plain
from schemas.records import MachineStateRecord, ProductionOrderRecord, RecordRef, version_of

if TYPE_CHECKING:
    from connectors.mqtt.config import MqttMapping

#: Record fields a mapping may fill, by kind, and how each value is read.
RECORD_FIELDS = SHOPFLOOR_FIELDS

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
#: One step of a payload path: `.key`, `.0` (a list index) or `[field=value]` (the first list
#: element whose `field` equals `value`: Sparkplug-style metric lists are not in a fixed order).
_STEP = re.compile(r"\.([^.\[\]{}?=]+)|\[([^.\[\]{}?=]+)=([^\]]*)\]")


class MappingFailed(SkippableError):
    """This message can never become a record under this mapping (the reason says why)."""


# -- topic patterns -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicPattern:
    """`plant/{plant}/line/+/order/{order}/status`: `{name}` and `+` match one level, a last
    `#` the rest; `{name}` also captures the level's value."""

    pattern: str
    levels: tuple[str, ...]

    @classmethod
    def parse(cls, pattern: str) -> TopicPattern:
        """Raises ValueError saying what is wrong with the pattern."""
        if not pattern or pattern.startswith("$"):
            raise ValueError("a topic pattern is non-empty and does not start with $ ($share is added by shared_group)")
        levels = tuple(pattern.split("/"))
        names: set[str] = set()
        for index, level in enumerate(levels):
            if level == "#":
                if index != len(levels) - 1:
                    raise ValueError(f"level {index + 1}: '#' may only be the last level")
            elif level.startswith("{") and level.endswith("}"):
                name = level[1:-1]
                if not _NAME.fullmatch(name) or name in ("payload", "topic", "key"):
                    raise ValueError(
                        f"level {index + 1}: {level!r} is not a capture; use {{word}} (not payload, topic or key)"
                    )
                if name in names:
                    raise ValueError(f"level {index + 1}: {{{name}}} is captured twice")
                names.add(name)
            elif any(c in level for c in "+#{}"):
                raise ValueError(f"level {index + 1}: {level!r} mixes a wildcard or brace with text")
        return cls(pattern, levels)

    @property
    def names(self) -> set[str]:
        return {level[1:-1] for level in self.levels if level.startswith("{")}

    @property
    def subscription(self) -> str:
        """The MQTT topic filter: every capture is a `+`."""
        return "/".join("+" if level.startswith("{") else level for level in self.levels)

    def match(self, topic: str) -> dict[str, str] | None:
        """The captured values, or None when `topic` is not one of the pattern's."""
        parts = topic.split("/")
        captured: dict[str, str] = {}
        for index, level in enumerate(self.levels):
            if level == "#":
                return captured
            if index >= len(parts):
                return None
            if level.startswith("{"):
                captured[level[1:-1]] = parts[index]
            elif level != "+" and level != parts[index]:
                return None
        return captured if len(parts) == len(self.levels) else None


# -- templates --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """One `{...}` of a template: a topic capture, or a path into the payload. A trailing `?`
    makes it optional (missing: empty, or the field left unset)."""

    text: str
    capture: str | None
    path: tuple[str | int | tuple[str, str], ...] | None
    optional: bool

    @classmethod
    def parse(cls, text: str) -> Reference:
        body, optional = (text[:-1], True) if text.endswith("?") else (text, False)
        if body == "payload":
            return cls(text, None, (), optional)
        if body.startswith("payload"):
            rest, steps = body[len("payload") :], []
            position = 0
            while position < len(rest):
                step = _STEP.match(rest, position)
                if step is None:
                    raise ValueError(
                        f"{{{text}}}: cannot read the path after {('payload' + rest[:position])!r} "
                        "(use .key, .0 or [field=value])"
                    )
                if step.group(1) is not None:
                    steps.append(int(step.group(1)) if step.group(1).isdigit() else step.group(1))
                else:
                    steps.append((step.group(2), step.group(3)))
                position = step.end()
            return cls(text, None, tuple(steps), optional)
        if not _NAME.fullmatch(body):
            raise ValueError(f"{{{text}}}: not a topic capture ({{plant}}) or a payload path ({{payload.status}})")
        return cls(text, body, None, optional)


@dataclass(frozen=True)
class Template:
    """A field's value: text with `{...}` references. A template that is one reference alone
    keeps the value's type (a number stays a number, for times and versions)."""

    source: str
    parts: tuple[str | Reference, ...]

    @classmethod
    def parse(cls, source: str) -> Template:
        parts: list[str | Reference] = []
        position = 0
        for found in _PLACEHOLDER.finditer(source):
            if found.start() > position:
                parts.append(source[position : found.start()])
            parts.append(Reference.parse(found.group(1)))
            position = found.end()
        if position < len(source):
            parts.append(source[position:])
        if any(isinstance(p, str) and ("{" in p or "}" in p) for p in parts):
            raise ValueError(f"{source!r}: an unmatched brace")
        return cls(source, tuple(parts))

    @property
    def references(self) -> list[Reference]:
        return [p for p in self.parts if isinstance(p, Reference)]

    def render(self, captures: Mapping[str, str], payload: Any, *, field: str) -> Any:
        """The value (None for a lone optional reference that is missing)."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Reference):
            return _resolve(self.parts[0], captures, payload, field=field)
        text = []
        for part in self.parts:
            if isinstance(part, str):
                text.append(part)
                continue
            value = _resolve(part, captures, payload, field=field)
            text.append("" if value is None else _as_text(value, part, field=field))
        return "".join(text)


_MISSING = object()


def _resolve(reference: Reference, captures: Mapping[str, str], payload: Any, *, field: str) -> Any:
    if reference.capture is not None:
        return captures[reference.capture]  # the config check made sure the pattern captures it
    node: Any = payload
    assert reference.path is not None
    if node is _MISSING:
        raise MappingFailed(f"{field}: the payload is not JSON, so {{{reference.text}}} cannot be read")
    walked = "payload"
    for step in reference.path:
        if isinstance(step, tuple):
            name, wanted = step
            walked += f"[{name}={wanted}]"
            node = (
                next((i for i in node if isinstance(i, Mapping) and _as_plain(i.get(name)) == wanted), _MISSING)
                if isinstance(node, list)
                else _MISSING
            )
        elif isinstance(step, int):
            walked += f".{step}"
            node = node[step] if isinstance(node, list) and step < len(node) else _MISSING
        else:
            walked += f".{step}"
            node = node.get(step, _MISSING) if isinstance(node, Mapping) else _MISSING
        if node is _MISSING:
            break
    if node is _MISSING or node is None:
        if reference.optional:
            return None
        raise MappingFailed(f"{field}: the payload has no {walked}")
    return node


def _as_text(value: Any, reference: Reference, *, field: str) -> str:
    text = _as_plain(value)
    if text is None:
        raise MappingFailed(f"{field}: {{{reference.text}}} is {_kind(value)}, not a text or number")
    return text


def _kind(value: Any) -> str:
    return "an object" if isinstance(value, Mapping) else "a list" if isinstance(value, list) else type(value).__name__


# -- records ------------------------------------------------------------------------------------------


def decode_payload(payload: bytes, *, needs_json: bool, what: str) -> Any:
    """The payload's JSON document; for a mapping that reads no payload field, its text if it is
    not JSON (a plain `running` is a fine machine state), else `_MISSING`."""
    try:
        return parse_json(payload, what=what)
    except InvalidPayload as exc:
        if needs_json:
            raise MappingFailed(str(exc)) from None
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return _MISSING


def record_from_message(
    mapping: MqttMapping,
    *,
    system: str,
    topic: str,
    payload: bytes,
    received_at: datetime,
) -> ProductionOrderRecord | MachineStateRecord | None:
    """The record `mapping` makes of this message, or None when its topic is not the mapping's.
    Raises MappingFailed with the reason."""
    captures = mapping.pattern.match(topic)
    if captures is None:
        return None
    document = decode_payload(payload, needs_json=mapping.reads_payload, what=f"payload on {topic}")
    if mapping.reads_payload and not isinstance(document, Mapping | list):
        raise MappingFailed(f"the payload on {topic} is {_kind(document)}, not a JSON object")
    key = _text(mapping.key_template.render(captures, document, field="key"), "key")
    if not key:
        raise MappingFailed("key: the template gave an empty key")
    values: dict[str, Any] = {}
    for name, template in mapping.field_templates.items():
        value = template.render(captures, document, field=f"fields.{name}")
        if value is None or value == "":
            continue
        kind = RECORD_FIELDS[mapping.kind][name]
        if kind == TIME:
            values[name] = _time(value, f"fields.{name}", unit_s=0.001 if mapping.epoch_unit == "ms" else 1.0)
        elif kind == NUMBER:
            values[name] = _version(value, f"fields.{name}")
        else:
            values[name] = _text(value, f"fields.{name}")
    title_template = mapping.title_template
    title = _text(title_template.render(captures | {"key": key}, document, field="title"), "title") or key
    url = mapping.url_template.render(captures, document, field="url") if mapping.url_template else None
    updated_at = values.get("updated_at") or received_at
    values.setdefault("updated_at", updated_at)
    values.setdefault("version", version_of(updated_at))
    model = RECORD_MODELS[mapping.kind]
    try:
        return model(
            ref=RecordRef(system=system, key=key),
            title=title,
            url=_text(url, "url") if url else None,
            visibility=mapping.visibility,
            **values,
        )
    except ValueError as exc:  # pydantic's ValidationError: a value the record refuses (too long, ...)
        raise MappingFailed(f"the record is not valid: {exc}") from None


def _text(value: Any, field: str) -> str:
    text = _as_plain(value)
    if text is None:
        raise MappingFailed(f"{field}: got {_kind(value)}, expected a text or number")
    return text


def _time(value: Any, field: str, *, unit_s: float) -> datetime:
    if isinstance(value, bool):
        raise MappingFailed(f"{field}: got a boolean, expected a time (ISO 8601 or epoch)")
    if isinstance(value, int | float):
        try:
            return epoch_time(value, what=field, unit_s=unit_s)
        except InvalidPayload as exc:
            raise MappingFailed(str(exc)) from None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise MappingFailed(f"{field}: {value[:40]!r} is not an ISO 8601 time") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise MappingFailed(f"{field}: got {_kind(value)}, expected a time (ISO 8601 or epoch)")


def _version(value: Any, field: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MappingFailed(f"{field}: got {_kind(value)} {str(value)[:20]!r}, expected a whole number >= 0")
    return value
