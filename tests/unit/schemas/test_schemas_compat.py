"""schemas.compat: which schema changes break producers or consumers, and which do not."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Annotated, Any

import pytest
from pydantic import Field
from typing_extensions import TypeAliasType

from schemas.compat import breaking_changes
from schemas.envelope import Envelope
from schemas.export import _json_schema, json_schemas
from schemas.records import ArticleRecord, MachineStateRecord, ProductionOrderRecord, RecordMissing, TicketRecord

pytestmark = pytest.mark.unit

Schema = dict[str, Any]


def base() -> Schema:
    """A small schema shaped like pydantic's output: refs, arrays, optionals, enums, a tagged union."""
    return {
        "$defs": {
            "Item": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "size": {"type": "integer"}},
                "required": ["name"],
            },
            "Ticket": {
                "type": "object",
                "properties": {"kind": {"const": "ticket", "type": "string"}, "title": {"type": "string"}},
                "required": ["title"],
            },
            "Missing": {
                "type": "object",
                "properties": {"kind": {"const": "missing", "type": "string"}, "reason": {"type": "string"}},
                "required": ["reason"],
            },
        },
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "count": {"type": "integer"},
            "score": {"type": "number"},
            "version": {"const": "1", "type": "string"},
            "visibility": {"enum": ["public", "internal"], "type": "string"},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
            "data": {
                "discriminator": {"propertyName": "kind", "mapping": {"ticket": "#/$defs/Ticket"}},
                "oneOf": [{"$ref": "#/$defs/Ticket"}, {"$ref": "#/$defs/Missing"}],
            },
        },
        "required": ["id", "data"],
    }


def changed(edit: Callable[[Schema], object]) -> Schema:
    schema = base()
    edit(schema)
    return schema


BREAKING = {
    "property removed": (lambda s: s["properties"].pop("count"), "$.count: property removed"),
    "property removed in a $def, in an array": (
        lambda s: s["$defs"]["Item"]["properties"].pop("size"),
        "$.items[*].size: property removed",
    ),
    "property removed in a union variant": (
        lambda s: s["$defs"]["Ticket"]["properties"].pop("title"),
        "$.data[kind=ticket].title: property removed",
    ),
    "optional property made required": (
        lambda s: s["required"].append("count"),
        "$.count: property newly required",
    ),
    "new required property": (
        lambda s: (s["properties"].update(extra={"type": "string"}), s["required"].append("extra")),
        "$.extra: property newly required",
    ),
    "type changed": (
        lambda s: s["properties"]["count"].update(type="string"),
        "$.count: type changed from integer to string",
    ),
    "number narrowed to integer": (
        lambda s: s["properties"]["score"].update(type="integer"),
        "$.score: type changed from number to integer",
    ),
    "optional made non-nullable": (
        lambda s: s["properties"].update(note={"type": "string"}),
        "$.note: type narrowed: null no longer allowed",
    ),
    "array items type changed": (
        lambda s: s["properties"]["items"].update(items={"type": "string"}),
        "$.items[*]: type changed from object to string",
    ),
    "enum value removed": (
        lambda s: s["properties"]["visibility"].update(enum=["internal"]),
        '$.visibility: enum/const value(s) removed: "public"',
    ),
    "const value changed": (
        lambda s: s["properties"]["version"].update(const="2"),
        '$.version: enum/const value(s) removed: "1"',
    ),
    "free string restricted to an enum": (
        lambda s: s["properties"]["id"].update(enum=["a"]),
        '$.id: values narrowed to "a"',
    ),
    "additionalProperties turned false": (
        lambda s: s.update(additionalProperties=False),
        "$: additionalProperties turned false",
    ),
    "additionalProperties turned false in a $def": (
        lambda s: s["$defs"]["Item"].update(additionalProperties=False),
        "$.items[*]: additionalProperties turned false",
    ),
    "union variant removed": (
        lambda s: s["properties"]["data"]["oneOf"].pop(),
        "$.data: variant kind=missing removed",
    ),
}


@pytest.mark.parametrize("edit, expected", BREAKING.values(), ids=BREAKING.keys())
def test_breaking_change_is_reported_with_its_path(edit: Callable[[Schema], object], expected: str) -> None:
    problems = breaking_changes(base(), changed(edit))

    assert any(problem.startswith(expected) for problem in problems), problems


COMPATIBLE = {
    "new optional property": lambda s: s["properties"].update(extra={"type": "string"}),
    "new enum value": lambda s: s["properties"]["visibility"]["enum"].append("restricted"),
    "new $def": lambda s: s["$defs"].update(Other={"type": "object"}),
    "new union variant": lambda s: s["properties"]["data"]["oneOf"].append({"type": "null"}),
    "required made optional": lambda s: s["$defs"]["Item"]["required"].clear(),
    "integer widened to number": lambda s: s["properties"]["count"].update(type="number"),
    "made nullable": lambda s: s["properties"].update(id={"anyOf": [{"type": "string"}, {"type": "null"}]}),
    "const widened to an enum": lambda s: s["properties"].update(version={"enum": ["1", "2"], "type": "string"}),
    "docs changed": lambda s: s["properties"]["id"].update(title="Id", description="The id."),
    "$ref inlined": lambda s: s["properties"]["items"].update(items=copy.deepcopy(s["$defs"]["Item"])),
    "$def renamed": lambda s: (
        s["$defs"].update(Record=s["$defs"].pop("Ticket")),
        s["properties"]["data"].update(oneOf=[{"$ref": "#/$defs/Record"}, {"$ref": "#/$defs/Missing"}]),
    ),
}


@pytest.mark.parametrize("edit", COMPATIBLE.values(), ids=COMPATIBLE.keys())
def test_additive_change_is_compatible(edit: Callable[[Schema], object]) -> None:
    assert breaking_changes(base(), changed(edit)) == []


def test_every_breaking_change_is_listed() -> None:
    def edit(schema: Schema) -> None:
        schema["properties"].pop("count")
        schema["required"].append("score")
        schema["properties"]["visibility"]["enum"] = ["public"]

    assert breaking_changes(base(), changed(edit)) == [
        "$.count: property removed",
        '$.visibility: enum/const value(s) removed: "internal"',
        "$.score: property newly required",
    ]


def test_recursive_schemas_terminate() -> None:
    node: Schema = {
        "$defs": {
            "Node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}
        },
        "$ref": "#/$defs/Node",
    }
    narrowed = copy.deepcopy(node)
    narrowed["$defs"]["Node"]["additionalProperties"] = False

    assert breaking_changes(node, node) == []
    assert breaking_changes(node, narrowed) == ["$: additionalProperties turned false"]


def test_exported_schemas_are_compatible_with_themselves() -> None:
    for name, schema in json_schemas().items():
        assert breaking_changes(schema, schema) == [], name


def test_naming_the_record_event_union_would_not_break_its_schema() -> None:
    """The model change recommended for nicer schemas (a named type alias) changes shape only."""
    RecordEvent = TypeAliasType(
        "RecordEvent",
        Annotated[
            TicketRecord | ArticleRecord | ProductionOrderRecord | MachineStateRecord | RecordMissing,
            Field(discriminator="kind"),
        ],
    )
    current = json_schemas()["record-event.envelope.schema.json"]
    proposed = _json_schema(Envelope[RecordEvent], "Envelope[RecordEvent]")

    assert proposed["properties"]["data"] == {"$ref": "#/$defs/RecordEvent"}
    assert breaking_changes(current, proposed) == []
    assert breaking_changes(proposed, current) == []
