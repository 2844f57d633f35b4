"""The Know flow's suggestions on the labelled set in bench/know/: 25 help-desk articles and 52
questions (50 that an article answers, each labelled with the articles that do, and 2 that none
does). Each question gets what the flow would suggest (streams/flows/know.py: at most
`max_suggestions`, scoring at least `min_score`):

- precision@3: of the articles suggested, the share that answer the question;
- hit rate@3: of the questions an article answers, the share whose suggestions hold one;
- noise: the questions no article answers that got a suggestion all the same.

Pure computation, no broker: it also runs as a unit test (tests/unit/streams/test_know_flow.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.records import ArticleRecord
from schemas.topics import TopicNames
from streams.flows.emit import Emitter
from streams.flows.know import Know
from streams.knowledge import ArticleIndex
from threadlink.config import KnowSettings

SET = Path(__file__).parent / "know"
THRESHOLDS = (0.0, 1.0, 2.0, 3.0, 4.0)


def labelled_set() -> tuple[list[ArticleRecord], list[dict[str, Any]]]:
    articles = [ArticleRecord.model_validate(doc) for doc in json.loads((SET / "articles.json").read_text())]
    return articles, json.loads((SET / "questions.json").read_text())


def evaluate(settings: KnowSettings | None = None) -> dict[str, Any]:
    settings = settings or KnowSettings()
    articles, questions = labelled_set()
    index = ArticleIndex()
    for article in articles:
        index.put(article)
    know = Know(Emitter(TopicNames("bench")), settings, index)
    suggested = relevant_suggested = answerable = hits = noise = 0
    misses: list[str] = []
    for item in questions:
        chosen = {hit.article.ref.key for hit in know.suggestions(item["question"], "internal")}
        wanted = set(item["relevant"])
        suggested += len(chosen)
        relevant_suggested += len(chosen & wanted)
        if wanted:
            answerable += 1
            if chosen & wanted:
                hits += 1
            else:
                misses.append(item["question"])
        elif chosen:
            noise += 1
    return {
        "min_score": settings.min_score,
        "max_suggestions": settings.max_suggestions,
        "questions": len(questions),
        "answerable": answerable,
        "suggested": suggested,
        "precision_at_3": round(relevant_suggested / suggested, 3) if suggested else None,
        "hit_rate_at_3": round(hits / answerable, 3) if answerable else None,
        "noise": noise,
        "missed": misses,
    }


def measure(_ctx: Any = None) -> dict[str, Any]:
    default = KnowSettings()
    return {
        "default": evaluate(default),
        "by_threshold": [evaluate(default.model_copy(update={"min_score": t})) for t in THRESHOLDS],
    }


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
