"""Everyone's subscriptions (Reach), in every worker's memory: a thread may come in on any
partition and name what anyone subscribed to. Read from the compacted subscriptions topic by a
TopicReader; at most `MAX_SUBSCRIPTIONS` are kept (further ones are logged and ignored)."""

from __future__ import annotations

import logging
import re
import threading

from pydantic import TypeAdapter, ValidationError

from schemas.envelope import Envelope
from schemas.subscriptions import Subscription
from streams.readers import TopicReader

log = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS = 100_000
#: Words of one message looked up as keywords (a long paste costs no more than this).
MAX_WORDS = 500
SUBSCRIPTION = TypeAdapter(Envelope[Subscription])


def project_of(record_id: str) -> str:
    """A record's project: its key up to the last hyphen, upper case (jira:SUP-7 -> SUP)."""
    key = record_id.partition(":")[2]
    return key.rpartition("-")[0].upper() if "-" in key else ""


class Subscriptions:
    """Thread-safe: the reader thread puts, the worker's loop asks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, Subscription] = {}
        # (platform, workspace, about, value) -> the subscriptions to it, by key: a message's
        # records, projects and words are looked up, never every subscription scanned.
        self._index: dict[tuple[str, str, str, str], dict[str, Subscription]] = {}
        self._full_warned = False

    def __len__(self) -> int:
        return len(self._by_key)

    def put(self, subscription: Subscription) -> None:
        where = (subscription.platform, subscription.workspace, subscription.about, subscription.value)
        with self._lock:
            if not subscription.active:
                self._by_key.pop(subscription.key, None)
                self._index.get(where, {}).pop(subscription.key, None)
                return
            if subscription.key not in self._by_key and len(self._by_key) >= MAX_SUBSCRIPTIONS:
                if not self._full_warned:
                    log.warning("reach: %d subscriptions held; further ones are ignored", MAX_SUBSCRIPTIONS)
                    self._full_warned = True
                return
            self._by_key[subscription.key] = subscription
            self._index.setdefault(where, {})[subscription.key] = subscription

    def take(self, value: bytes) -> None:
        try:
            self.put(SUBSCRIPTION.validate_json(value).data)
        except ValidationError:
            log.warning("reach: skipped a subscription that does not read")

    def matching(self, platform: str, workspace: str, text: str, record_ids: list[str]) -> list[Subscription]:
        """Who asked to hear of a message saying `text` and naming `record_ids`, on its platform."""
        wanted = [("record", record_id) for record_id in record_ids]
        wanted += [("project", project) for project in {project_of(record_id) for record_id in record_ids} - {""}]
        words = list(dict.fromkeys(re.findall(r"[\w-]+", text.lower())))[:MAX_WORDS]
        wanted += [("keyword", word) for word in words]
        found: dict[str, Subscription] = {}
        with self._lock:
            for about, value in wanted:
                found.update(self._index.get((platform, workspace, about, value), {}))
        return list(found.values())


def reader(bootstrap_servers: str, topic: str, subscriptions: Subscriptions, *, client_id: str) -> TopicReader:
    return TopicReader(bootstrap_servers, topic, subscriptions.take, client_id=client_id, name="reach-subscriptions")
