"""Finding record keys (PROJ-123, #4567, owner/repo#12, issue URLs, ...) in message text.

Which words name a record is configuration (`streams.mention_patterns`): a regular expression per
system, whose whole match or group `key` is the key, or a `key` template filled from its named
groups (`{owner}/{repo}#{number}` for `https://github.com/(?P<owner>...)/(?P<repo>...)/issues/(?P<number>...)`),
lower-cased for systems whose keys are case-insensitive. Nothing here knows a platform.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.records import RecordRef

# Code spans and links' URL parts are not mentions: `PROJ-1` in a code block is usually a log line.
_CODE = re.compile(r"```.*?```|`[^`]*`", re.DOTALL)


@dataclass(frozen=True)
class MentionPattern:
    system: str
    regex: re.Pattern[str]
    key: str | None = None
    """A `str.format` template of the regex's named groups; None: group `key`, or the whole match."""
    lowercase: bool = False

    def key_of(self, match: re.Match[str]) -> str | None:
        if self.key is not None:
            try:
                key = self.key.format(**{k: v or "" for k, v in match.groupdict().items()})
            except (KeyError, IndexError, ValueError):
                return None
        else:
            key = match.groupdict().get("key") or match.group(0)
        return key.lower() if self.lowercase else key


PatternSpec = tuple[str, str] | tuple[str, str, str | None, bool]
"""(system, regex) or (system, regex, key template, lowercase)."""


class MentionExtractor:
    def __init__(self, patterns: Sequence[PatternSpec]) -> None:
        self.patterns = [
            MentionPattern(spec[0], re.compile(spec[1]), *spec[2:])  # type: ignore[arg-type]
            for spec in patterns
        ]

    def extract(self, text: str) -> list[RecordRef]:
        """Distinct records in order of first mention."""
        text = _CODE.sub(" ", text or "")
        found: dict[str, RecordRef] = {}
        for pattern in self.patterns:
            for match in pattern.regex.finditer(text):
                key = pattern.key_of(match)
                if not key:
                    continue
                ref = RecordRef(system=pattern.system, key=key)
                found.setdefault(ref.id, ref)
        return list(found.values())
