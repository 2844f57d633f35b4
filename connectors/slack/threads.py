"""Which thread a Slack message is in, for the events that do not say (reactions).

A reaction event names the message (channel, ts) but not its thread; a reply's thread is its
root's ts. Messages this process has seen teach it the answer for free; otherwise Slack is
asked once (conversations.replies accepts any message's ts and returns the thread's root
first). Both the memory and the questions are bounded: a reaction storm costs at most one
lookup per distinct message, and a failed lookup falls back to the message's own ts (right for
every message that is a thread's root, the common case for cards and questions).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from connectors.errors import ConnectorError

log = logging.getLogger(__name__)

#: Messages remembered (channel, ts) -> thread ts; the oldest are forgotten first.
MAX_REMEMBERED = 50_000
#: A webhook has 3 s to answer Slack; a lookup that takes longer is not worth the redelivery.
LOOKUP_TIMEOUT_S = 2.0


class ThreadIndex:
    def __init__(self, client: Any | None, *, max_remembered: int = MAX_REMEMBERED) -> None:
        self._client = client
        self._max = max_remembered
        self._threads: OrderedDict[tuple[str, str], str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._threads)

    def remember(self, channel: str, ts: str, thread_ts: str) -> None:
        self._threads[(channel, ts)] = thread_ts
        self._threads.move_to_end((channel, ts))
        while len(self._threads) > self._max:
            self._threads.popitem(last=False)

    async def thread_of(self, channel: str, ts: str) -> str:
        known = self._threads.get((channel, ts))
        if known is not None:
            return known
        thread_ts = await self._look_up(channel, ts)
        self.remember(channel, ts, thread_ts)
        return thread_ts

    async def _look_up(self, channel: str, ts: str) -> str:
        if self._client is None:
            return ts
        try:
            answer = await asyncio.wait_for(
                self._client.conversation_replies(channel, ts, limit=1), timeout=LOOKUP_TIMEOUT_S
            )
        except (ConnectorError, TimeoutError) as exc:
            log.info("slack: could not learn the thread of %s/%s (%s); taking it as a thread's root", channel, ts, exc)
            return ts
        messages = answer.get("messages") if isinstance(answer, dict) else None
        root = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], dict) else {}
        thread_ts = root.get("thread_ts") or root.get("ts")
        return thread_ts if isinstance(thread_ts, str) and thread_ts else ts
