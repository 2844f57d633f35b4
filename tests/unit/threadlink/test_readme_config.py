"""The README's configuration is one a user can copy: it passes `threadlink config check`'s
validation (every connector's own model included), so the docs cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from threadlink.config import load_settings

pytestmark = pytest.mark.unit

README = Path(__file__).resolve().parents[3] / "README.md"


def test_the_readme_configuration_is_valid(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.DOTALL)
    [documented] = [block for block in blocks if "kafka:" in block and "connectors:" in block]
    config = tmp_path / "threadlink.yaml"
    config.write_text(documented)
    settings = load_settings(config)
    assert {"slack", "jira", "mes", "presses", "wordpress"} <= set(settings.connectors)
    assert "mes" in {pattern.system for pattern in settings.streams.mention_patterns}
