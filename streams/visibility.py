"""Stay safe: a record is shown only where its audience may see it."""

from schemas.envelope import VISIBILITY_RANK as _RANK


def may_show(record_visibility: str, channel_visibility: str) -> bool:
    """A restricted record shows only in restricted places; public and internal records show
    in any company channel (a public Slack channel is still inside the company)."""
    if _RANK.get(record_visibility, 2) < _RANK["restricted"]:
        return True
    return _RANK.get(channel_visibility, 0) >= _RANK["restricted"]
