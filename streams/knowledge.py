"""The articles every worker can suggest from, whichever partitions it owns: a question may come
in on any partition, and the article that answers it may live on any other.

Each worker reads the article records of the records topic from its start and then as they
come (a plain consumer outside the group, like the connectors' read-backs), and keeps them in
memory (at most `MAX_ARTICLES`, their text cut to `MAX_TEXT`). Search is BM25 (bm25s, with the
Snowball English stemmer and stop words): the index is rebuilt on the first search after a
change; past `SMALL_INDEX` articles at most every `REBUILD_EVERY_S` seconds, so a burst of
article edits costs one rebuild.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import bm25s
import orjson
import Stemmer
from pydantic import TypeAdapter, ValidationError

from schemas.envelope import Envelope
from schemas.records import ArticleRecord, RecordEvent
from streams.readers import TopicReader

log = logging.getLogger(__name__)

MAX_ARTICLES = 50_000
MAX_TEXT = 5_000
REBUILD_EVERY_S = 5.0
#: Up to this many articles the index is rebuilt on every search after a change (about 25 ms).
SMALL_INDEX = 200

RECORD = TypeAdapter(Envelope[RecordEvent])


@dataclass(frozen=True)
class Hit:
    article: ArticleRecord
    score: float


class ArticleIndex:
    """Thread-safe: the reader thread puts articles in, the worker's loop searches."""

    def __init__(self, *, max_articles: int = MAX_ARTICLES, clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_articles
        self._clock = clock
        self._lock = threading.Lock()
        self._articles: dict[str, ArticleRecord] = {}
        self._dirty = False
        self._built_at = float("-inf")
        self._ids: list[str] = []
        self._bm25: Any = None
        self._stemmer = Stemmer.Stemmer("english")
        self.caught_up = threading.Event()
        """Set once the reader has read every article published before the worker started."""

    def __len__(self) -> int:
        with self._lock:
            return len(self._articles)

    def put(self, article: ArticleRecord) -> None:
        with self._lock:
            known = self._articles.get(article.ref.id)
            if known is not None and known.version > article.version:
                return  # a stale copy
            if known is None and len(self._articles) >= self._max:
                log.warning("know: %d articles indexed already; %s is left out", self._max, article.ref.id)
                return
            self._articles[article.ref.id] = article
            self._dirty = True

    def remove(self, record_id: str) -> None:
        with self._lock:
            if self._articles.pop(record_id, None) is not None:
                self._dirty = True

    def search(self, text: str, k: int) -> list[Hit]:
        """The `k` best articles for `text`, best first (score > 0)."""
        with self._lock:
            if (self._dirty and self._clock() - self._built_at >= REBUILD_EVERY_S) or self._bm25 is None:
                self._rebuild()
            bm25, ids, articles = self._bm25, self._ids, self._articles
        if bm25 is None or not ids:
            return []
        query = bm25s.tokenize([text], stopwords="en", stemmer=self._stemmer, show_progress=False)
        if not query.vocab:
            return []
        found, scores = bm25.retrieve(query, k=min(k, len(ids)), show_progress=False)
        hits = []
        for index, score in zip(found[0], scores[0], strict=True):
            article = articles.get(ids[int(index)])
            if article is not None and float(score) > 0:
                hits.append(Hit(article, float(score)))
        return hits

    def _rebuild(self) -> None:
        self._ids = list(self._articles)
        self._built_at, self._dirty = self._clock(), False
        if not self._ids:
            self._bm25 = None
            return
        corpus = [searchable(self._articles[i]) for i in self._ids]
        tokens = bm25s.tokenize(corpus, stopwords="en", stemmer=self._stemmer, show_progress=False)
        bm25 = bm25s.BM25()
        bm25.index(tokens, show_progress=False)
        self._bm25 = bm25


def searchable(article: ArticleRecord) -> str:
    """What a question is matched against: the title counts twice (it says what the article is
    about), then the tags, categories, excerpt and body."""
    parts = [article.title, article.title, " ".join(article.tags), " ".join(article.categories), article.excerpt]
    return " ".join([*parts, article.body])[:MAX_TEXT]


class ArticleReader(TopicReader):
    """Reads the records topic into an ArticleIndex on a daemon thread, until `stop()`."""

    def __init__(self, bootstrap_servers: str, topic: str, index: ArticleIndex, *, client_id: str) -> None:
        super().__init__(bootstrap_servers, topic, self._take, client_id=client_id, name="know-articles")
        self._index = index
        # The index's own event is the one a starting worker waits on.
        self.caught_up = index.caught_up

    def _take(self, value: bytes) -> None:
        try:
            kind = orjson.loads(value).get("data", {}).get("kind")
        except (orjson.JSONDecodeError, AttributeError):
            return
        if kind not in ("article", "missing"):
            return  # tickets, orders: most of the topic, never parsed
        try:
            data = RECORD.validate_json(value).data
        except ValidationError:
            return
        if isinstance(data, ArticleRecord):
            if data.status in (None, "publish", "published", "private"):
                self._index.put(data)
            else:
                self._index.remove(data.ref.id)  # a draft, or trashed: not an answer (yet)
        else:
            self._index.remove(data.ref.id)
