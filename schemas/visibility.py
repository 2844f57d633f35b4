"""Who may see something: one ordered type for records, comments, messages and places.

For a record or a comment, its visibility is the widest audience that may see it. For a place
(a channel, a room, a DM), it is who can read what is said there. Ordered from the widest
audience to the narrowest:

- `public`: anyone, also outside the organisation: a Slack Connect channel shared with another
  company, a Matrix room anyone can join or read, a published article, an issue in a public repo;
- `internal`: anyone in the organisation: a public Slack channel, a Jira project without
  restrictions (the default);
- `restricted`: a limited group: a private channel, a DM, an encrypted or invite-only room, a
  restricted project, a comment restricted to a role or group.

Stay safe: something may be shown in a place only when the place's audience is no wider than
its own (`may_show`).
"""

from __future__ import annotations

from typing import Literal

Visibility = Literal["public", "internal", "restricted"]

#: Narrower audiences rank higher.
RANK: dict[str, int] = {"public": 0, "internal": 1, "restricted": 2}


def may_show(item: Visibility, place: Visibility) -> bool:
    """Whether something of visibility `item` may be shown in a place of visibility `place`."""
    return RANK[place] >= RANK[item]


def narrowest(*visibilities: Visibility) -> Visibility:
    """The most restricted of them: what something made of all of them may be shown as."""
    return max(visibilities, key=RANK.__getitem__)
