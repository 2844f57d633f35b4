"""`threadlink matrix registration`: the application service registration made from the Matrix
connector's config, valid against the spec's Registration schema, tokens from the config.
(Synapse loading it is shown by the integration fixture, which starts Synapse with this file.)"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from sandbox.contracts import spec_file
from threadlink.cli import main

pytestmark = pytest.mark.unit

CONFIG = """
connectors:
  chat:
    type: matrix
    homeserver_url: https://matrix.example.org
    server_name: example.org
    {url}
    as_token: as-token-from-config
    hs_token: hs-token-from-config
  jira:
    base_url: https://acme.atlassian.net
    email: bot@example.org
    api_token: jira-token
    webhook_secret: jira-secret
"""


def _config(tmp_path: Path, url: str = "url: https://threadlink.example.org/webhooks/chat") -> str:
    path = tmp_path / "threadlink.yaml"
    path.write_text(CONFIG.format(url=url))
    return str(path)


def _spec_errors(document: object) -> list[str]:
    schema_path = spec_file("matrix/api/application-service/definitions/registration.yaml")

    def retrieve(uri: str) -> Resource[object]:
        return Resource.from_contents(
            yaml.safe_load(Path(uri.removeprefix("file://")).read_text()), default_specification=DRAFT202012
        )

    registry: Registry[object] = Registry(retrieve=retrieve)  # type: ignore[call-arg]
    validator = Draft202012Validator({"$ref": schema_path.as_uri()}, registry=registry)
    return [error.message for error in validator.iter_errors(document)]


def test_it_prints_a_registration_the_spec_allows_with_the_configs_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], vendor_specs: str
) -> None:
    assert main(["matrix", "registration", "--config", _config(tmp_path)]) == 0

    document = yaml.safe_load(capsys.readouterr().out)
    assert _spec_errors(document) == []
    assert document["url"] == "https://threadlink.example.org/webhooks/chat"
    assert (document["as_token"], document["hs_token"]) == ("as-token-from-config", "hs-token-from-config")
    assert document["sender_localpart"] == "threadlink"
    assert document["namespaces"]["users"] == [{"exclusive": True, "regex": r"@threadlink:example\.org"}]


def test_without_a_url_it_says_which_field_to_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", "registration", "--config", _config(tmp_path, url="")]) == 2

    error = capsys.readouterr().err
    assert "connectors.chat.url is not set" in error and "--url" in error
    assert main(["matrix", "registration", "--config", _config(tmp_path, url=""), "--url", "https://x.org/w"]) == 0


def test_output_is_written_readable_by_its_owner_only(tmp_path: Path) -> None:
    target = tmp_path / "appservice.yaml"

    assert main(["matrix", "registration", "--config", _config(tmp_path), "--output", str(target)]) == 0

    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert yaml.safe_load(target.read_text())["id"] == "threadlink"


def test_an_unknown_connector_name_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", "registration", "--config", _config(tmp_path), "--connector", "jira"]) == 2
    assert "no Matrix connector of that name" in capsys.readouterr().err
