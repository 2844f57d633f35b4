"""Know: a question in a thread gets the articles that may answer it.

    social.events (by thread) --on_social--> commands.<platform>  PostMessage: up to N articles

A message is a question when it asks (a question mark, or it starts with a question word). Up
to `streams.know.max_suggestions` articles scoring at least `min_score` are suggested, each at
most once per thread, and only where it may show (an internal article never in a channel shared
with another company). threadlink's own messages ask nothing. The suggestion's id is the
message's, so a redelivered question is suggested to once.

The scores come from the worker's article index (streams/knowledge.py), which is not part of
the event: a question asked again after new articles arrived may get other suggestions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from prometheus_client import Counter

from schemas.commands import PostMessage, command_id_for
from schemas.envelope import Envelope
from schemas.social import SocialEvent, SocialMessage
from schemas.visibility import may_show
from streams.flows.emit import Emit, Emitter
from streams.knowledge import ArticleIndex, Hit
from streams.state import ThreadState
from threadlink.config import KnowSettings

KNOW = Counter(
    "threadlink_stream_know_total",
    "Know decisions by outcome (suggested, nothing_relevant, not_a_question).",
    ["outcome"],
)

QUESTION_WORDS = frozenset(
    {"how", "why", "what", "where", "when", "who", "which", "can", "could", "does", "do", "did", "is", "are"}
    | {"should", "would", "will", "anyone", "help"}
)
_WORDS = re.compile(r"[a-z']+")


def is_question(text: str) -> bool:
    words = _WORDS.findall(text.lower())
    return "?" in text or bool(words and words[0] in QUESTION_WORDS)


@dataclass
class Know:
    emitter: Emitter
    settings: KnowSettings
    index: ArticleIndex

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
