"""schemas.export: checked-in JSON Schemas and AsyncAPI document, drift and breaking changes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from schemas import export as exporter
from schemas.envelope import SCHEMA_VERSION, Envelope
from schemas.export import (
    ASYNCAPI_FILE,
    EXPORT_HINT,
    JSON_DIR,
    SCHEMAS_DIR,
    VERSION_KEY,
    BreakingChange,
    asyncapi_document,
    export,
    json_schemas,
    main,
    schema_file_name,
)
from schemas.topics import TopicNames, TopicSpec, catalog
from schemas.trace import new_traceparent

pytestmark = pytest.mark.unit

SOCIAL = f"{JSON_DIR}/social-event.envelope.schema.json"


# -- (a) drift ----------------------------------------------------------------------------------


def test_checked_in_files_match_the_models() -> None:
    drift = export(write=False)

    assert not drift, (
        "schemas/json/ or schemas/asyncapi.yaml differ from the models:\n  "
        + "\n  ".join(drift)
        + f"\nTo fix: {EXPORT_HINT} (or `python -m schemas.export --write`) and commit the result."
    )


# -- what is exported ---------------------------------------------------------------------------


def test_one_schema_per_value_model_with_readable_names() -> None:
    assert sorted(json_schemas()) == [
        "checkpoint.envelope.schema.json",
        "command.envelope.schema.json",
        "dead-letter.envelope.schema.json",
        "ledger-entry.envelope.schema.json",
        "link-request.envelope.schema.json",
        "link.envelope.schema.json",
        "outcome.envelope.schema.json",
        "record-comment.envelope.schema.json",
        "record-event.envelope.schema.json",
        "social-event.envelope.schema.json",
        "subscription.envelope.schema.json",
    ]


def test_every_catalog_model_is_exported() -> None:
    specs = catalog(TopicNames("other"), command_targets=["jira", "slack", "matrix"])

    assert {schema_file_name(spec.value_model) for spec in specs} == set(json_schemas())


def test_schemas_record_id_title_and_version() -> None:
    for file_name, schema in json_schemas().items():
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"].endswith(f"/{file_name}")
        assert schema[VERSION_KEY] == SCHEMA_VERSION
        assert re.fullmatch(r"Envelope\[[A-Za-z]+\]", schema["title"]), schema["title"]


def test_a_new_topic_model_gets_a_file_of_its_own() -> None:
    class Reaction(BaseModel):
        emoji: str

    specs = [
        *catalog(TopicNames(), command_targets=["a", "b"]),
        TopicSpec("threadlink.social.reactions", "thread id", Envelope[Reaction], "Reactions."),
        TopicSpec("threadlink.raw", "none", Reaction, "A bare model."),
    ]

    names = exporter._value_models(specs)

    assert "reaction.envelope.schema.json" in names
    assert "reaction.schema.json" in names
    assert len(names) == 13


# -- (e) the AsyncAPI document ------------------------------------------------------------------


def address_pattern(address: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{\w+\\\}", "[a-z0-9_-]+", re.escape(address)) + "$")


def test_asyncapi_lists_every_catalog_topic() -> None:
    targets = ["jira", "matrix", "slack"]
    document = asyncapi_document(TopicNames(), command_targets=targets)
    channels = document["channels"]

    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["version"] == SCHEMA_VERSION
    for spec in catalog(TopicNames(), command_targets=targets):
        matching = [c for c in channels.values() if address_pattern(c["address"]).match(spec.name)]
        assert len(matching) == 1, f"{spec.name} is not in the AsyncAPI document exactly once"
        (channel,) = matching
        kafka = channel["bindings"]["kafka"]
        assert kafka["partitions"] == spec.partitions
        assert kafka["topicConfiguration"]["cleanup.policy"] == spec.cleanup_policy.split(",")
        assert kafka["topicConfiguration"].get("retention.ms") == spec.retention_ms
        (message,) = channel["messages"].values()
        assert message["payload"]["schema"]["$ref"] == f"./{JSON_DIR}/{schema_file_name(spec.value_model)}"
        assert message["bindings"]["kafka"]["key"]["description"] == spec.key
    assert channels["commands"]["address"] == "threadlink.commands.{target}"
    assert channels["commands"]["parameters"]["target"]["examples"] == targets


def test_asyncapi_uses_the_namespace_given() -> None:
    channels = asyncapi_document(TopicNames("it-42"))["channels"]

    assert all(channel["address"].startswith("it-42.") for channel in channels.values())


def test_checked_in_asyncapi_refers_to_every_exported_schema() -> None:
    document = yaml.safe_load((SCHEMAS_DIR / ASYNCAPI_FILE).read_text(encoding="utf-8"))
    refs = [
        message["payload"]["schema"]["$ref"]
        for channel in document["channels"].values()
        for message in channel["messages"].values()
    ]

    for ref in refs:
        assert (SCHEMAS_DIR / ref).is_file(), f"{ref} does not exist"
    assert {Path(ref).name for ref in refs} == {path.name for path in (SCHEMAS_DIR / JSON_DIR).glob("*.schema.json")}


def test_header_pattern_is_portable_and_matches_a_traceparent() -> None:
    pattern = asyncapi_document()["components"]["schemas"]["kafkaHeaders"]["properties"]["traceparent"]["pattern"]

    assert "?P<" not in pattern  # ECMA-262, as JSON Schema wants
    assert re.match(pattern, new_traceparent())


def test_rendering_is_deterministic() -> None:
    assert exporter.generated_files() == exporter.generated_files()


# -- writing, refusing breaking changes ---------------------------------------------------------


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    directory = tmp_path / "schemas"
    assert len(export(write=True, directory=directory)) == len(json_schemas()) + 1
    return directory


def edit_schema(directory: Path, path: str, edit: Any) -> None:
    schema = json.loads((directory / path).read_text())
    edit(schema)
    (directory / path).write_text(json.dumps(schema))


def test_write_then_check_is_clean(exported: Path) -> None:
    assert export(write=False, directory=exported) == []


def test_drift_lists_missing_extra_and_changed_files(exported: Path) -> None:
    (exported / SOCIAL).unlink()
    (exported / JSON_DIR / "old.envelope.schema.json").write_text("{}")
    (exported / ASYNCAPI_FILE).write_text("asyncapi: 3.0.0\n")

    assert export(write=False, directory=exported) == [
        "changed: schemas/asyncapi.yaml",
        "extra: schemas/json/old.envelope.schema.json (checked in, no longer generated)",
        "missing: schemas/json/social-event.envelope.schema.json (generated, not checked in)",
    ]


def test_compatible_change_is_written(exported: Path) -> None:
    edit_schema(exported, SOCIAL, lambda schema: schema["properties"].pop("subject"))  # as if `subject` were new

    assert export(write=True, directory=exported) == [f"changed: schemas/{SOCIAL} (compatible)"]
    assert export(write=False, directory=exported) == []


def test_breaking_change_in_the_same_major_is_refused(exported: Path) -> None:
    def had_more(schema: dict[str, Any]) -> None:
        schema["properties"]["legacy"] = {"type": "string"}
        schema["$defs"]["Author"]["properties"]["email"] = {"type": "string"}

    edit_schema(exported, SOCIAL, had_more)
    (exported / JSON_DIR / "gone.envelope.schema.json").write_text(json.dumps({VERSION_KEY: SCHEMA_VERSION}))
    before = (exported / SOCIAL).read_text()

    with pytest.raises(BreakingChange) as refused:
        export(write=True, directory=exported)

    assert refused.value.reasons == [
        "schemas/json/gone.envelope.schema.json: schema removed",
        f"schemas/{SOCIAL}: $.data[kind=message].author.email: property removed",
        f"schemas/{SOCIAL}: $.legacy: property removed",
    ]
    assert (exported / SOCIAL).read_text() == before, "nothing is written when refused"


def test_breaking_change_with_a_major_bump_is_written(exported: Path) -> None:
    def older_major(schema: dict[str, Any]) -> None:
        schema["properties"]["legacy"] = {"type": "string"}
        schema[VERSION_KEY] = f"{int(SCHEMA_VERSION.split('.')[0]) - 1}.7"

    edit_schema(exported, SOCIAL, older_major)

    (line,) = export(write=True, directory=exported)
    assert line == f"changed: schemas/{SOCIAL} (breaking: $.legacy: property removed)"
    assert export(write=False, directory=exported) == []


def test_main_check_exits_1_with_the_fix(exported: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setattr(exporter, "SCHEMAS_DIR", exported)
    assert main(["--check"]) == 0
    (exported / SOCIAL).unlink()

    assert main([]) == 1
    err = capsys.readouterr().err
    assert "missing: schemas/json/social-event.envelope.schema.json" in err
    assert EXPORT_HINT in err

    assert main(["--write"]) == 0
    assert main(["--check"]) == 0


def test_main_write_reports_a_refused_breaking_change(
    exported: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setattr(exporter, "SCHEMAS_DIR", exported)
    edit_schema(exported, SOCIAL, lambda schema: schema["properties"].update(legacy={"type": "string"}))

    assert main(["--write"]) == 1
    err = capsys.readouterr().err
    assert "$.legacy: property removed" in err
    assert "SCHEMA_VERSION" in err
