"""Export the contract: JSON Schemas of every topic's values and an AsyncAPI document of the topics.

Both are generated from the topic catalog (schemas/topics.py) and checked in, under
`schemas/json/*.schema.json` and `schemas/asyncapi.yaml`, so other teams and tools can read the
contract without running Python, and a review shows every change to it. A test fails when the
checked-in files drift from the models; `threadlink schemas export` (or
`python -m schemas.export --write`) rewrites them, but refuses a breaking change (see
schemas/compat.py) unless the major part of `SCHEMA_VERSION` was bumped.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from schemas.compat import breaking_changes
from schemas.envelope import CONTENT_TYPE, SCHEMA_VERSION, Envelope
from schemas.topics import TopicNames, TopicSpec, catalog
from schemas.trace import TRACEPARENT_RE

SCHEMAS_DIR = Path(__file__).resolve().parent
JSON_DIR = "json"
ASYNCAPI_FILE = "asyncapi.yaml"

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: `$id`s are stable URIs named like the files, so one schema file can `$ref` another.
SCHEMA_BASE_URI = "https://threadlink.io/schemas/json/"
VERSION_KEY = "x-threadlink-schema-version"
GENERATED_NOTE = "Generated from the models in schemas/ by `threadlink schemas export`; do not edit."
EXPORT_HINT = "run `threadlink schemas export`"

#: Commands topics are one per connector that runs a sink; these only fill the examples of the
#: AsyncAPI `{target}` parameter (the checked-in document must not depend on a deployment).
DEFAULT_COMMAND_TARGETS: tuple[str, ...] = ("jira", "slack")
#: Any target works for the JSON Schemas: all commands topics share one value model.
_SCHEMA_COMMAND_TARGETS = ("example",)

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
#: The exported schemas are 2020-12 (`$defs`, `$ref` next to other keywords), not AsyncAPI's
#: draft-07 dialect, so payloads say so with a Multi Format Schema Object.
PAYLOAD_SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"
_TARGET_PARAMETER = "{target}"
_HEADERS_SCHEMA = "kafkaHeaders"


class BreakingChange(Exception):
    """`export(write=True)` refused: the new schemas break the checked-in ones in the same major."""

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reasons = list(reasons)
        super().__init__(
            f"{len(self.reasons)} breaking schema change(s) without a major version bump:\n"
            + "\n".join(f"  - {reason}" for reason in self.reasons)
        )


# -- JSON Schemas -----------------------------------------------------------------------------


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema (draft 2020-12) of every value model in the topic catalog."""
    return {file_name: _json_schema(model, name) for file_name, (model, name) in _value_models().items()}


def schema_file_name(model: type[BaseModel]) -> str:
    """`Envelope[SocialMessage]` → `social-message.envelope.schema.json`; a plain model → `<name>.schema.json`."""
    data_type = _envelope_data_type(model)
    if data_type is None:
        return f"{_kebab(model.__name__)}.schema.json"
    return f"{_kebab(_type_name(data_type))}.envelope.schema.json"


def _value_models(specs: Iterable[TopicSpec] | None = None) -> dict[str, tuple[type[BaseModel], str]]:
    """File name → (value model, readable name), once per model even when several topics share it."""
    if specs is None:
        specs = catalog(TopicNames(), command_targets=_SCHEMA_COMMAND_TARGETS)
    found: dict[str, tuple[type[BaseModel], str]] = {}
    for spec in specs:
        model = spec.value_model
        file_name = schema_file_name(model)
        if file_name in found and found[file_name][0] is not model:
            raise ValueError(f"two different value models would both be exported as {file_name}; rename one")
        data_type = _envelope_data_type(model)
        found[file_name] = (model, f"Envelope[{_type_name(data_type)}]" if data_type is not None else model.__name__)
    return dict(sorted(found.items()))


def _json_schema(model: type[BaseModel], title: str) -> dict[str, Any]:
    # Validation mode: the schema is the contract of what may be on the topic, i.e. what our
    # consumers accept (`model_validate`), whoever produced it; that is also what compat.py must
    # protect (a newly required field breaks producers). What we produce (`to_bytes`) is a subset
    # of it, which tests/unit/schemas checks. Today both modes give the same schemas.
    generated = model.model_json_schema(by_alias=True, mode="validation")
    _require_discriminators(generated)
    data_type = _envelope_data_type(model)
    description = generated.pop("description", None)
    if description is None and data_type is not None:
        description = (
            f"A CloudEvents 1.0 event in structured mode ({CONTENT_TYPE}) whose `data` is a {_type_name(data_type)}."
        )
    generated.pop("title", None)
    header = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": SCHEMA_BASE_URI + schema_file_name(model),
        "$comment": GENERATED_NOTE,
        "title": title,
        "description": description,
        VERSION_KEY: SCHEMA_VERSION,
    }
    return {**{key: value for key, value in header.items() if value is not None}, **generated}


def _require_discriminators(schema: dict[str, Any]) -> None:
    """Mark each discriminated union's tag as required in its variants.

    pydantic rejects a union member without its tag (`union_tag_not_found`), but the tag field
    has a default (`kind: Literal["ticket"] = "ticket"`), so its schema says it is optional.
    Adding `required` next to each variant's `$ref` keeps the model's own `$defs` entry as it
    is (the model may also be used outside the union) and makes the variants exclusive, as
    `oneOf` needs.
    """
    defs = schema.get("$defs", {})

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            tag = (node.get("discriminator") or {}).get("propertyName")
            for variant in node.get("oneOf", ()) if tag else ():
                target = defs.get(variant.get("$ref", "").removeprefix("#/$defs/"), variant)
                if tag not in target.get("required", ()) and tag not in variant.get("required", ()):
                    variant["required"] = [*variant.get("required", ()), tag]
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)


def _envelope_data_type(model: Any) -> Any | None:
    metadata = getattr(model, "__pydantic_generic_metadata__", None) or {}
    if metadata.get("origin") is Envelope and len(metadata.get("args", ())) == 1:
        return metadata["args"][0]
    return None


def _type_name(data_type: Any) -> str:
    """The name a data type is known by: a class's name, or the module-level name of an alias."""
    if isinstance(data_type, type) or type(data_type).__name__ == "TypeAliasType":
        return str(data_type.__name__)
    # `RecordEvent = Annotated[TicketRecord | RecordMissing, ...]` has no name of its own.
    names = {
        attribute
        for module_name, module in list(sys.modules.items())
        if module_name.startswith("schemas.") and module is not None
        for attribute, value in vars(module).items()
        if value is data_type and not attribute.startswith("_")
    }
    if len(names) != 1:
        raise ValueError(
            f"cannot name the envelope data type {data_type!r} (candidates: {sorted(names) or 'none'}); "
            "bind it to exactly one public module-level name in schemas/"
        )
    return names.pop()


def _kebab(name: str) -> str:
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1-\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1-\2", name).lower()


def _camel(words: Iterable[str]) -> str:
    parts = [part for word in words for part in re.split(r"[^A-Za-z0-9]+", word) if part]
    return parts[0][:1].lower() + parts[0][1:] + "".join(part[:1].upper() + part[1:] for part in parts[1:])


# -- AsyncAPI ---------------------------------------------------------------------------------


def asyncapi_document(
    names: TopicNames = TopicNames(),  # noqa: B008 - frozen dataclass, safe as a default
    command_targets: Sequence[str] = DEFAULT_COMMAND_TARGETS,
) -> dict[str, Any]:
    """An AsyncAPI 3.0.0 document with one channel per topic of the catalog.

    All commands topics (`<namespace>.commands.<target>`, one per connector running a sink)
    are one channel with a `{target}` address parameter: they share their model, key and
    configuration, and the document then does not change when a deployment adds a connector.
    The other addresses are the concrete topic names of `names.namespace`.

    There are no `operations`: the catalog does not say which process sends or receives what,
    and the document states only what the catalog knows.
    """
    # The catalog itself builds the parameterised commands topic: its name and description
    # come out with `{target}` in them.
    specs = catalog(names, command_targets=[_TARGET_PARAMETER])
    commands_address = names.commands(_TARGET_PARAMETER)
    targets = sorted(set(command_targets))
    _check_commands_topics_alike(names, targets, next(spec for spec in specs if spec.name == commands_address))

    channels: dict[str, Any] = {}
    for spec in specs:
        relative = spec.name.removeprefix(f"{names.namespace}.")
        channel_id = _camel(part for part in relative.split(".") if part != _TARGET_PARAMETER)
        if channel_id in channels:
            raise ValueError(f"two topics would share the AsyncAPI channel id {channel_id!r}")
        channels[channel_id] = _channel(spec)
        if spec.name == commands_address:
            channels[channel_id]["parameters"] = {
                "target": {
                    "description": "Name of the connector that carries out the commands (it runs a sink).",
                    "examples": targets,
                    "location": "$message.payload#/data/target",
                }
            }

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "threadlink topics",
            "version": SCHEMA_VERSION,
            "description": (
                "Every Kafka topic threadlink uses, with its key, configuration and values. Values are "
                f"CloudEvents 1.0 events in structured mode ({CONTENT_TYPE}); their JSON Schemas are in "
                f"{JSON_DIR}/. Topic names are shown for the namespace `{names.namespace}`; a deployment may "
                f"use another. {GENERATED_NOTE}"
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "components": {"schemas": {_HEADERS_SCHEMA: _kafka_headers_schema()}},
    }


def _check_commands_topics_alike(names: TopicNames, targets: list[str], template: TopicSpec) -> None:
    """One channel stands for all commands topics: they must differ only in name and description."""
    commands_topics = {names.commands(target) for target in targets}
    for spec in catalog(names, command_targets=targets):
        alike = replace(spec, name=template.name, description=template.description) == template
        if spec.name in commands_topics and not alike:
            raise ValueError(f"{spec.name} differs from other commands topics; give it its own channel")


def _channel(spec: TopicSpec) -> dict[str, Any]:
    model_file = schema_file_name(spec.value_model)
    data_type = _envelope_data_type(spec.value_model)
    name = _type_name(data_type) if data_type is not None else spec.value_model.__name__
    message = {
        "name": model_file.removesuffix(".schema.json"),
        "title": f"Envelope[{name}]" if data_type is not None else name,
        "contentType": CONTENT_TYPE,
        "headers": {"$ref": f"#/components/schemas/{_HEADERS_SCHEMA}"},
        "payload": {"schemaFormat": PAYLOAD_SCHEMA_FORMAT, "schema": {"$ref": f"./{JSON_DIR}/{model_file}"}},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": spec.key},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }
    topic_configuration: dict[str, Any] = {"cleanup.policy": spec.cleanup_policy.split(",")}
    if spec.retention_ms is not None:
        topic_configuration["retention.ms"] = spec.retention_ms
    for key, value in sorted(spec.extra_configs.items()):
        topic_configuration[key] = int(value) if value.lstrip("-").isdigit() else value
    return {
        "address": spec.name,
        "description": spec.description,
        "messages": {_camel([name]): message},
        "bindings": {
            "kafka": {
                "partitions": spec.partitions,
                "topicConfiguration": topic_configuration,
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _kafka_headers_schema() -> dict[str, Any]:
    """The Kafka headers `Envelope.kafka_headers()` sets."""
    # JSON Schema patterns are ECMA-262 regular expressions: no Python named groups.
    traceparent_pattern = re.sub(r"\(\?P<\w+>", "(", TRACEPARENT_RE.pattern)
    return {
        "type": "object",
        "properties": {
            "content-type": {"type": "string", "const": CONTENT_TYPE},
            "traceparent": {
                "type": "string",
                "pattern": traceparent_pattern,
                "description": "W3C trace context, the same as the envelope's `traceparent`.",
            },
        },
        "required": ["content-type"],
    }


# -- files ------------------------------------------------------------------------------------


def render_json(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def render_yaml(document: dict[str, Any]) -> str:
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100, default_flow_style=False)
    return f"# {GENERATED_NOTE}\n{body}"


def generated_files() -> dict[str, str]:
    """Path relative to schemas/ → content, for every file the export writes."""
    files = {f"{JSON_DIR}/{name}": render_json(schema) for name, schema in json_schemas().items()}
    files[ASYNCAPI_FILE] = render_yaml(asyncapi_document())
    return files


def checked_in_files(directory: Path | None = None) -> dict[str, str]:
    """Path relative to `directory` (default: schemas/) → content, for every exported file there."""
    directory = directory or SCHEMAS_DIR
    paths = sorted((directory / JSON_DIR).glob("*.schema.json"))
    if (directory / ASYNCAPI_FILE).exists():
        paths.append(directory / ASYNCAPI_FILE)
    return {path.relative_to(directory).as_posix(): path.read_text(encoding="utf-8") for path in paths}


def export(write: bool = False, *, directory: Path | None = None) -> list[str]:
    """Compare the generated files with those in `directory` (default: schemas/); with `write`,
    bring them up to date.

    Returns one line per missing, extra or changed file (empty: up to date). With `write=True`
    and a breaking change to a checked-in schema in the same major `SCHEMA_VERSION`, it raises
    `BreakingChange` listing every reason and writes nothing.
    """
    directory = directory or SCHEMAS_DIR
    fresh = generated_files()
    current = checked_in_files(directory)
    shown = Path(directory.name)

    drift: list[str] = []
    for path in sorted(fresh.keys() | current.keys()):
        if path not in current:
            drift.append(f"missing: {shown / path} (generated, not checked in)")
        elif path not in fresh:
            drift.append(f"extra: {shown / path} (checked in, no longer generated)")
        elif current[path] != fresh[path]:
            line = f"changed: {shown / path}"
            if path.endswith(".json"):
                problems = _breaking(current[path], fresh[path])
                line += f" (breaking: {'; '.join(problems)})" if problems else " (compatible)"
            drift.append(line)

    if write and drift:
        reasons = [
            f"{shown / path}: {reason}"
            for path in sorted(current)
            if path.endswith(".json") and current[path] != fresh.get(path) and not _major_bumped(current[path])
            for reason in (_breaking(current[path], fresh[path]) if path in fresh else ["schema removed"])
        ]
        if reasons:
            raise BreakingChange(reasons)
        (directory / JSON_DIR).mkdir(parents=True, exist_ok=True)
        for path in current.keys() - fresh.keys():
            (directory / path).unlink()
        for path, text in fresh.items():
            if current.get(path) != text:
                (directory / path).write_text(text, encoding="utf-8")
    return drift


def _breaking(old_text: str, new_text: str) -> list[str]:
    try:
        old = json.loads(old_text)
    except ValueError as error:
        return [f"the checked-in file is not valid JSON ({error})"]
    return breaking_changes(old, json.loads(new_text))


def _major_bumped(old_text: str) -> bool:
    """Did SCHEMA_VERSION's major change since the checked-in schema was exported?"""
    try:
        recorded = json.loads(old_text).get(VERSION_KEY)
    except (ValueError, AttributeError):
        return False
    return isinstance(recorded, str) and _major(recorded) != _major(SCHEMA_VERSION)


def _major(version: str) -> str:
    return version.split(".", 1)[0]


# -- command line -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m schemas.export [--check|--write]`: 0 when up to date (or written), 1 otherwise."""
    parser = argparse.ArgumentParser(
        prog="python -m schemas.export",
        description="Export the JSON Schemas and the AsyncAPI document of threadlink's topics.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="report drift and exit 1 if any (default)")
    mode.add_argument("--write", action="store_true", help="rewrite the checked-in files")
    args = parser.parse_args(argv)

    if args.write:
        try:
            drift = export(write=True)
        except BreakingChange as error:
            print(f"schemas: not written. {error}", file=sys.stderr)
            print(
                "Keep the old fields (add new ones beside them), or bump the major of SCHEMA_VERSION "
                "in schemas/envelope.py if consumers must change too.",
                file=sys.stderr,
            )
            return 1
        if not drift:
            print(f"schemas: up to date (schema version {SCHEMA_VERSION}), nothing written")
        else:
            print(f"schemas: updated {len(drift)} file(s) for schema version {SCHEMA_VERSION}:")
            print("\n".join(f"  {line}" for line in drift))
        return 0

    drift = export(write=False)
    if drift:
        print(f"schemas: {len(drift)} exported file(s) differ from the models:", file=sys.stderr)
        print("\n".join(f"  {line}" for line in drift), file=sys.stderr)
        print(f"To fix: {EXPORT_HINT} and commit the result.", file=sys.stderr)
        return 1
    print(f"schemas: {len(generated_files())} exported files up to date (schema version {SCHEMA_VERSION})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
