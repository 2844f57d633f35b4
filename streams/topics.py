"""The catalog's topics as Faust sees them, each declared once. Values are raw bytes: flows
validate them with the schemas/ models themselves, so a bad record goes to the dead-letter
topic with a reason instead of failing inside Faust's deserializer."""

from __future__ import annotations

from dataclasses import dataclass, field

import faust

from schemas.topics import STREAM_PARTITIONS, TopicNames


@dataclass
class StreamTopics:
    names: TopicNames
    app: faust.App
    _declared: dict[str, faust.TopicT] = field(default_factory=dict)

    def topic(self, name: str, partitions: int | None = None) -> faust.TopicT:
        """The Faust topic of `name`, built on first use (outputs to any topic go through here)."""
        if name not in self._declared:
            self._declared[name] = self.app.topic(
                name,
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
                partitions=partitions,
                internal=False,
            )
        return self._declared[name]

    @property
    def social_events(self) -> faust.TopicT:
        return self.topic(self.names.social_events, STREAM_PARTITIONS)

    @property
    def records(self) -> faust.TopicT:
        return self.topic(self.names.records, STREAM_PARTITIONS)

    @property
    def record_comments(self) -> faust.TopicT:
        return self.topic(self.names.record_comments, STREAM_PARTITIONS)

    @property
    def link_requests(self) -> faust.TopicT:
        return self.topic(self.names.link_requests, STREAM_PARTITIONS)

    @property
    def outcomes(self) -> faust.TopicT:
        return self.topic(self.names.outcomes, STREAM_PARTITIONS)
