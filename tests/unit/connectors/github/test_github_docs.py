"""The configuration docs/connectors/github.md shows is valid, and its mention patterns name
GitHub issues the way the connector keys them (the page cannot drift from the code)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams.mentions import MentionExtractor
from threadlink.config import load_settings

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[4] / "docs" / "connectors" / "github.md"


def test_the_documented_config_loads_and_its_patterns_find_issue_references(tmp_path: Path) -> None:
    block = re.search(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert block is not None, f"{DOC} has no yaml example"
    config = tmp_path / "threadlink.yaml"
    config.write_text(block.group(1), encoding="utf-8")
    settings = load_settings(config)
    patterns = [(p.system, p.regex, p.key, p.lowercase) for p in settings.streams.mention_patterns]
    found = MentionExtractor(patterns).extract("Acme/Shop#12, https://github.com/acme/shop/issues/12 and acme/web#3")
    assert [ref.id for ref in found] == ["github:acme/shop#12", "github:acme/web#3"]
