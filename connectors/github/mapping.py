"""GitHub JSON to threadlink records, and threadlink's markers in what it writes to GitHub.

Pure functions: no I/O, so tests feed them captured payloads. An issue's key is
`owner/repo#number`, lower-cased (GitHub's owner and repository names are case-insensitive), so a
webhook and a look-up of one issue meet under one record id.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from connectors.errors import SkippableError
from connectors.github.config import GitHubConfig
from schemas.records import RecordComment, RecordRef, TicketRecord, version_of
from schemas.social import ThreadRef
from schemas.visibility import Visibility

#: GitHub refuses issue and comment bodies over 65,536 characters; leave room for the link and marker.
MAX_BODY_CHARS = 60_000
#: Issue titles are cut here (GitHub allows 256).
MAX_TITLE_CHARS = 250

# Owner: letters, digits, hyphens (a user or organisation login, at most 39). Repository: letters,
# digits, `.`, `-`, `_` (at most 100). Anything else cannot name an issue and must not reach a URL.
_KEY = re.compile(
    r"^(?P<owner>[A-Za-z0-9][A-Za-z0-9-]{0,38})/(?P<repo>[A-Za-z0-9._-]{1,100})#(?P<number>[1-9][0-9]{0,9})$"
)
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")
_MARKER = re.compile(r"<!--\s*threadlink:(?P<kind>command|thread)=(?P<value>[A-Za-z0-9:._/#@+=-]{1,200})\s*-->")

ISSUE_DELETING_ACTIONS = ("deleted", "transferred")
COMMENT_ACTIONS: dict[str, Literal["added", "edited", "deleted"]] = {
    "created": "added",
    "edited": "edited",
    "deleted": "deleted",
}


class IssueKey(NamedTuple):
    owner: str
    repo: str
    number: int

    @property
    def repo_name(self) -> str:
        return f"{self.owner}/{self.repo}"

    def __str__(self) -> str:
        return f"{self.owner}/{self.repo}#{self.number}"


def parse_issue_key(key: str) -> IssueKey | None:
    """`acme/shop#12` -> IssueKey("acme", "shop", 12); None for anything that is not one."""
    match = _KEY.match(key or "")
    if match is None or match.group("repo") in (".", ".."):
        return None
    return IssueKey(match.group("owner").lower(), match.group("repo").lower(), int(match.group("number")))


def is_repo_name(value: str) -> bool:
    return bool(_REPO.match(value or "")) and value.split("/")[1] not in (".", "..")


def parse_github_time(value: Any) -> datetime | None:
    """GitHub writes ISO 8601 in UTC (`2011-04-22T13:33:48Z`)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _login(user: Any) -> str | None:
    if isinstance(user, Mapping) and isinstance(user.get("login"), str) and user["login"]:
        return str(user["login"])
    return None


def repo_of(payload: Mapping[str, Any]) -> tuple[str, bool | None]:
    """A webhook's repository as (`owner/repo` lower-cased, whether it is private)."""
    repository = payload.get("repository")
    name = repository.get("full_name") if isinstance(repository, Mapping) else None
    if not isinstance(name, str) or not is_repo_name(name):
        raise SkippableError("github webhook without a repository full_name")
    private = repository.get("private") if isinstance(repository, Mapping) else None
    return name.lower(), private if isinstance(private, bool) else None


def repo_from_issue(issue: Mapping[str, Any]) -> str | None:
    """The `owner/repo` of a REST issue, from its `repository_url` (`.../repos/owner/repo`)."""
    url = issue.get("repository_url")
    if not isinstance(url, str):
        return None
    owner, _, repo = url.rstrip("/").rpartition("/repos/")[2].partition("/")
    name = f"{owner}/{repo}"
    return name.lower() if is_repo_name(name) else None


def issue_number(issue: Any) -> int:
    number = issue.get("number") if isinstance(issue, Mapping) else None
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise SkippableError("github issue without a number")
    return number


def issue_key(repo: str, issue: Any) -> str:
    return f"{repo.lower()}#{issue_number(issue)}"


def status_of(issue: Mapping[str, Any]) -> str | None:
    """`open`, `closed`, or `closed (not planned)` / `closed (duplicate)` when GitHub says why."""
    state = issue.get("state")
    if not isinstance(state, str):
        return None
    reason = issue.get("state_reason")
    if state == "closed" and isinstance(reason, str) and reason not in ("completed", ""):
        return f"closed ({reason.replace('_', ' ')})"
    return state


def ticket_from_issue(
    issue: Any, *, repo: str, system: str, config: GitHubConfig, private: bool | None = None
) -> TicketRecord:
    """A REST issue or a webhook's `issue` as a TicketRecord. SkippableError without a number."""
    if not isinstance(issue, Mapping):
        raise SkippableError("github payload without an issue object")
    key = issue_key(repo, issue)
    title = issue.get("title")
    updated_at = parse_github_time(issue.get("updated_at"))
    labels = [
        str(label.get("name") if isinstance(label, Mapping) else label)
        for label in issue.get("labels") or []
        if (isinstance(label, Mapping) and isinstance(label.get("name"), str)) or isinstance(label, str)
    ]
    assignees = [login for login in (_login(a) for a in issue.get("assignees") or []) if login]
    assignee = _login(issue.get("assignee")) or (assignees[0] if assignees else None)
    html_url = issue.get("html_url")
    return TicketRecord(
        ref=RecordRef(system=system, key=key),
        title=title if isinstance(title, str) and title else key,
        status=status_of(issue),
        assignee=", ".join(assignees) if len(assignees) > 1 else assignee,
        project=repo.lower(),
        labels=labels,
        url=html_url if isinstance(html_url, str) and html_url.startswith(("https://", "http://")) else None,
        updated_at=updated_at,
        version=version_of(updated_at),
        visibility=config.visibility_of(repo, private=private),
    )


def comment_from_webhook(
    payload: Mapping[str, Any], *, repo: str, system: str, visibility: Visibility, own_login: str | None = None
) -> RecordComment:
    """An `issue_comment` webhook (created, edited, deleted) as a RecordComment. GitHub has no
    internal comments: every comment is public within its repository's visibility. A comment
    carrying threadlink's marker, or written by its own login, is `by_threadlink`."""
    key = issue_key(repo, payload.get("issue"))
    action = COMMENT_ACTIONS.get(str(payload.get("action")))
    if action is None:
        raise SkippableError(f"github issue_comment action {str(payload.get('action'))[:40]!r} is not a comment change")
    comment = payload.get("comment")
    if not isinstance(comment, Mapping) or comment.get("id") in (None, "") or isinstance(comment.get("id"), bool):
        raise SkippableError(f"github comment webhook for {key} without a comment id")
    raw_body = comment.get("body")
    body = raw_body if isinstance(raw_body, str) else ""
    author = _login(comment.get("user"))
    created_at = parse_github_time(comment.get("created_at"))
    return RecordComment(
        ref=RecordRef(system=system, key=key),
        comment_id=str(comment["id"]),
        action=action,
        author=author,
        body=strip_markers(body),
        public=True,
        visibility=visibility,
        by_threadlink=marker_of(body, "command") is not None
        or bool(own_login and author and author.lower() == own_login.lower()),
        created_at=created_at,
        version=version_of(parse_github_time(comment.get("updated_at")) or created_at),
    )


# -- what threadlink writes -----------------------------------------------------------------------


def marker(kind: Literal["command", "thread"], value: str) -> str:
    """A hidden HTML comment (GitHub's Markdown does not render it) that lets threadlink find
    what it wrote: `<!-- threadlink:command=<id> -->`."""
    return f"<!-- threadlink:{kind}={value} -->"


def marker_of(body: Any, kind: Literal["command", "thread"]) -> str | None:
    if not isinstance(body, str):
        return None
    return next((m.group("value") for m in _MARKER.finditer(body) if m.group("kind") == kind), None)


def strip_markers(body: str) -> str:
    return _MARKER.sub("", body).rstrip()


def thread_label(thread: ThreadRef) -> str:
    """The label (and marker) of the issue opened for a thread: how a retry finds it instead of
    opening a second. The same form as the Jira connector's."""
    return "threadlink-" + hashlib.sha256(thread.id.encode()).hexdigest()[:20]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def backlink_markdown(
    thread: ThreadRef | None, *, command_id: str, permalink: str | None = None, text: str = ""
) -> str:
    """The Markdown of a back-link comment: the command's words (by default "Discussed in a
    Slack thread"), the permalink as a link (or the thread's id without one), and the command's
    marker."""
    # Someone's words that look like threadlink's marker are not one: the marker is how a retry
    # finds this comment, and how its webhook is known as threadlink's own.
    intro = strip_markers(text).strip() or (
        f"Discussed in a {thread.platform} thread" if thread else "Discussed in a thread"
    )
    intro = _clip(intro, MAX_BODY_CHARS)
    if permalink and permalink.startswith(("https://", "http://")) and not any(c in permalink for c in " <>()"):
        link = f" [{permalink}]({permalink})"
    elif thread is not None:
        link = f" `{thread.id}`"
    else:
        link = ""
    return f"{intro}{link}\n\n{marker('command', command_id)}"


def issue_body(description: str, *, label: str) -> str:
    return f"{_clip(strip_markers(description).strip(), MAX_BODY_CHARS)}\n\n{marker('thread', label)}".lstrip()


def issue_title(summary: str, platform: str) -> str:
    return _clip(" ".join(summary.split()), MAX_TITLE_CHARS) or f"Thread from {platform}"
