"""The catalog's topics as Faust sees them. Values are raw bytes: flows validate them with
the schemas/ models themselves, so a bad record goes to the dead-letter topic with a reason
instead of failing inside Faust's deserializer."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from schemas.topics import RECORD_PARTITIONS, TopicNames


@dataclass
class StreamTopics:
    names: TopicNames
    social_messages: faust.TopicT
    records: faust.TopicT
    link_requests: faust.TopicT
    links: faust.TopicT
    dead_letters: faust.TopicT
    _app: faust.App

    @classmethod
    def declare(cls, app: faust.App, names: TopicNames) -> StreamTopics:
        def topic(name: str, partitions: int | None = None) -> faust.TopicT:
            return app.topic(
                name,
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
                partitions=partitions,
                internal=False,
            )

        return cls(
            names=names,
            social_messages=topic(names.social_messages),
            records=topic(names.records, RECORD_PARTITIONS),
            link_requests=topic(names.link_requests, RECORD_PARTITIONS),
            links=topic(names.links),
            dead_letters=topic(names.dead_letters),
            _app=app,
        )

    def commands(self, target: str) -> faust.TopicT:
        return self._app.topic(
            self.names.commands(target),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            internal=False,
        )
