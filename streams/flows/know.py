"""Know: a question in a thread gets the articles that may answer it, and a resolved thread can
become a draft article.

    social.events (by thread) --on_social--> commands.<platform>  PostMessage: up to N articles
                                             commands.<content>   DraftArticle: once per thread, when
                                                                  it is marked resolved

A message is a question when it asks (a question mark, or it starts with a question word). Up
to `streams.know.max_suggestions` articles scoring at least `min_score` are suggested, each at
most once per thread, and only where it may show (an internal article never in a channel shared
with another company). threadlink's own messages ask nothing. The suggestion's id is the
message's, so a redelivered question is suggested to once.

A thread is marked resolved by the configured reaction on any of its messages, or the configured
command addressed to threadlink (`@threadlink resolved`); with `streams.know.draft_target` set,
the first time that happens the thread's last messages (heard while Know listens) go to that
connector as a DraftArticle for an editor to finish, titled by its first message. Once per
thread (the thread's state says so, and the command id is the thread's, so a redelivery or a
second mark asks nothing more). Never from a restricted place (a private channel, a DM): a draft
is read by every editor of the site, a wider audience than such a thread's.

The scores come from the worker's article index (streams/knowledge.py), which is not part of
the event: a question asked again after new articles arrived may get other suggestions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from prometheus_client import Counter

from schemas.commands import DraftArticle, PostMessage, command_id_for
from schemas.envelope import Envelope
from schemas.social import SocialEvent, SocialMessage, SocialReaction, ThreadRef
from schemas.visibility import Visibility, may_show
from streams.flows.emit import Emit, Emitter
from streams.knowledge import ArticleIndex, Hit
from streams.state import Line, ThreadState
from threadlink.config import KnowSettings

KNOW = Counter(
    "threadlink_stream_know_total",
    "Know decisions by outcome (suggested, nothing_relevant, not_a_question, draft_requested, draft_already, "
    "draft_restricted).",
    ["outcome"],
)

QUESTION_WORDS = frozenset(
    {"how", "why", "what", "where", "when", "who", "which", "can", "could", "does", "do", "did", "is", "are"}
    | {"should", "would", "will", "anyone", "help"}
)
_WORDS = re.compile(r"[a-z']+")
#: A draft's title: the thread's first words, at most this long.
TITLE_LENGTH = 120


def is_question(text: str) -> bool:
    words = _WORDS.findall(text.lower())
    return "?" in text or bool(words and words[0] in QUESTION_WORDS)


@dataclass
class Know:
    emitter: Emitter
    settings: KnowSettings
    index: ArticleIndex

    def __post_init__(self) -> None:
        command = self.settings.resolved_command
        self._resolved = re.compile(rf"(?<![\w-]){re.escape(command)}(?![\w-])", re.IGNORECASE) if command else None

    def suggestions(self, text: str, place: str, already: set[str] | None = None) -> list[Hit]:
        """The articles to suggest for `text` at a place of visibility `place`, best first."""
        hits = self.index.search(text, self.settings.max_suggestions * 3)
        chosen = [
            hit
            for hit in hits
            if hit.score >= self.settings.min_score
            and may_show(hit.article.visibility, place)  # type: ignore[arg-type]
            and hit.article.ref.id not in (already or set())
        ]
        return chosen[: self.settings.max_suggestions]

    def on_social(self, thread: ThreadState, envelope: Envelope[SocialEvent]) -> list[Emit]:
        return [*self._on_resolved(thread, envelope), *self._suggest(thread, envelope)]

    # -- a resolved thread's draft ---------------------------------------------------------

    def _on_resolved(self, thread: ThreadState, envelope: Envelope[SocialEvent]) -> list[Emit]:
        event = envelope.data
        if self.settings.draft_target is None:
            return []
        if isinstance(event, SocialReaction):
            if (
                event.action == "added"
                and not event.author.is_threadlink
                and event.reaction == self.settings.resolved_reaction
            ):
                return self.request_draft(thread, event.thread, envelope, place=event.channel_visibility)
            return []
        if not isinstance(event, SocialMessage) or event.author.is_threadlink or event.action != "posted":
            return []
        if event.mentions_threadlink and self._resolved is not None and self._resolved.search(event.text):
            return self.request_draft(
                thread, event.thread, envelope, place=event.channel_visibility, permalink=event.permalink
            )
        thread.heard(Line.of(event), self.settings.transcript_messages, permalink=event.permalink)
        return []

    def request_draft(
        self,
        thread: ThreadState,
        where: ThreadRef,
        cause: Envelope[SocialEvent],
        *,
        place: Visibility,
        permalink: str | None = None,
    ) -> list[Emit]:
        """The thread's DraftArticle, unless it was asked for already or the place is restricted."""
        if thread.drafted:
            KNOW.labels("draft_already").inc()
            return []
        if place == "restricted":
            KNOW.labels("draft_restricted").inc()
            return []
        assert self.settings.draft_target is not None
        lines = thread.transcript
        first = " ".join(lines[0].text.split()) if lines else ""
        title = (first if len(first) <= TITLE_LENGTH else first[: TITLE_LENGTH - 1] + "…") or (
            f"Resolved in a {where.platform} thread"
        )
        body = "\n\n".join(f"{line.author}: {line.text}" for line in lines)
        draft = DraftArticle(
            command_id=command_id_for("draft_article", where.id),
            target=self.settings.draft_target,
            reply_key=where.id,
            thread=where,
            title=title,
            body=body[:20_000],
            permalink=thread.permalink or permalink,
        )
        thread.drafted = True
        KNOW.labels("draft_requested").inc()
        return [self.emitter.command(draft, where.id, cause, visibility=place)]

    # -- suggestions -------------------------------------------------------------------------

    def _suggest(self, thread: ThreadState, envelope: Envelope[SocialEvent]) -> list[Emit]:
        event = envelope.data
        if not self.settings.enabled or not isinstance(event, SocialMessage) or event.action != "posted":
            return []
        if event.author.is_threadlink or not is_question(event.text):
            KNOW.labels("not_a_question").inc()
            return []
        hits = self.suggestions(event.text, event.channel_visibility, set(thread.suggested))
        if not hits:
            KNOW.labels("nothing_relevant").inc()
            return []
        thread.suggest([hit.article.ref.id for hit in hits])
        lines = [f"• {hit.article.title}" + (f" {hit.article.url}" if hit.article.url else "") for hit in hits]
        where = event.thread
        said = PostMessage(
            command_id=command_id_for("post_message", "know", where.id, event.message_id),
            target=where.platform,
            reply_key=where.id,
            destination=where,
            text=("These articles may help:\n" + "\n".join(lines))[:4000],
        )
        KNOW.labels("suggested").inc()
        return [self.emitter.command(said, where.id, envelope, visibility=event.channel_visibility)]
