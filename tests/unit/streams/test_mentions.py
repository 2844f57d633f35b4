import pytest

from streams.mentions import MentionExtractor
from threadlink.config import StreamSettings

pytestmark = pytest.mark.unit

DEFAULT = [(p.system, p.regex) for p in StreamSettings().mention_patterns]


def keys(text: str, patterns: list[tuple[str, str]] = DEFAULT) -> list[str]:
    return [ref.id for ref in MentionExtractor(patterns).extract(text)]


def test_finds_jira_keys_in_order_without_duplicates() -> None:
    assert keys("PROJ-12 broke, see also OPS-7 and PROJ-12 again") == ["jira:PROJ-12", "jira:OPS-7"]


@pytest.mark.parametrize("text", ["utf-8 is fine", "A-1", "PROJ-0", "proj-12", "PROJ-", "xPROJ-1y"])
def test_ignores_things_that_only_look_like_keys(text: str) -> None:
    assert keys(text) == []


def test_ignores_code_spans_and_blocks() -> None:
    assert keys("error in `PROJ-1` log\n```\nOPS-2 stack\n```\nreal: WEB-3") == ["jira:WEB-3"]


def test_named_group_key_and_several_systems() -> None:
    patterns = [*DEFAULT, ("zendesk", r"(?<![\w#])#(?P<key>[0-9]{3,9})\b")]
    assert keys("ticket #4567 and WEB-3, not #12", patterns) == ["jira:WEB-3", "zendesk:4567"]


def test_punctuation_around_keys() -> None:
    assert keys("(PROJ-5), <PROJ-6>, PROJ-7.") == ["jira:PROJ-5", "jira:PROJ-6", "jira:PROJ-7"]
