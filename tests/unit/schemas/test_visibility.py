import pytest

from schemas.visibility import may_show, narrowest

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("item", "place", "shown"),
    [
        ("public", "public", True),
        ("public", "restricted", True),
        ("internal", "internal", True),
        ("internal", "restricted", True),
        ("internal", "public", False),  # a channel shared with another company
        ("restricted", "internal", False),
        ("restricted", "public", False),
        ("restricted", "restricted", True),
    ],
)
def test_something_shows_only_where_the_audience_is_no_wider_than_its_own(item: str, place: str, shown: bool) -> None:
    assert may_show(item, place) is shown  # type: ignore[arg-type]


def test_narrowest() -> None:
    assert narrowest("public", "restricted", "internal") == "restricted"
    assert narrowest("public") == "public"
