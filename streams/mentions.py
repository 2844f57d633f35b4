"""Finding record keys (PROJ-123, #4567, ...) in message text."""

from __future__ import annotations

import re
from dataclasses import dataclass

from schemas.records import RecordRef

# Code spans and links' URL parts are not mentions: `PROJ-1` in a code block is usually a log line.
_CODE = re.compile(r"```.*?```|`[^`]*`", re.DOTALL)


@dataclass(frozen=True)
class MentionPattern:
    system: str
    regex: re.Pattern[str]


class MentionExtractor:
    def __init__(self, patterns: list[tuple[str, str]]) -> None:
        self.patterns = [MentionPattern(system, re.compile(regex)) for system, regex in patterns]

    def extract(self, text: str) -> list[RecordRef]:
        """Distinct records in order of first mention."""
        text = _CODE.sub(" ", text or "")
        found: dict[str, RecordRef] = {}
        for pattern in self.patterns:
            for match in pattern.regex.finditer(text):
                key = match.groupdict().get("key") or match.group(0)
                ref = RecordRef(system=pattern.system, key=key)
                found.setdefault(ref.id, ref)
        return list(found.values())
