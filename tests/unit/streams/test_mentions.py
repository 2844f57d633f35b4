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


# GitHub's patterns, as docs/connectors/github.md configures them: a key template fills the key
# from the regex's named groups, lower-cased (owner and repository names are case-insensitive).
GITHUB_KEY = "{owner}/{repo}#{number}"
GITHUB = [
    (
        "github",
        r"(?<![\w./-])(?P<owner>[A-Za-z0-9][A-Za-z0-9-]{0,38})/(?P<repo>[A-Za-z0-9._-]{1,100})#(?P<number>[1-9][0-9]{0,9})\b",
        GITHUB_KEY,
        True,
    ),
    (
        "github",
        r"https://github\.com/(?P<owner>[A-Za-z0-9][A-Za-z0-9-]{0,38})/(?P<repo>[A-Za-z0-9._-]{1,100})/issues/(?P<number>[1-9][0-9]{0,9})\b",
        GITHUB_KEY,
        True,
    ),
]


def test_github_short_references_and_issue_urls_name_one_record() -> None:
    text = "Acme/Shop#12 again? <https://github.com/acme/shop/issues/12|see> and https://github.com/o-1/r.js/issues/3"
    assert keys(text, [*DEFAULT, *GITHUB]) == ["github:acme/shop#12", "github:o-1/r.js#3"]


def test_github_and_jira_in_one_message() -> None:
    assert keys("PROJ-4 is acme/shop#5", [*DEFAULT, *GITHUB]) == ["jira:PROJ-4", "github:acme/shop#5"]


@pytest.mark.parametrize(
    "text",
    ["acme/shop#0", "x/y/z#5", "see #12", "https://github.com/acme/shop/pull/12", "`acme/shop#5`", "acme/shop#"],
)
def test_github_lookalikes_are_not_mentions(text: str) -> None:
    assert keys(text, GITHUB) == []


def test_a_key_template_naming_no_group_gives_no_mention_instead_of_crashing() -> None:
    assert keys("abc", [("x", r"(?P<a>abc)", "{missing}", False)]) == []
