"""How every flow consumes its topic: read with the contract, decide, send, and acknowledge an
event only once all it caused is durable.

Faust acknowledges an event when the loop moves on (and commits acknowledged offsets on a
timer); its producer buffers sends. So each agent consumes a `noack()` stream and acknowledges
events itself, in order, once the broker acknowledged every output of theirs. Outputs are sent
without waiting for each other: an event's outputs, and those of the events after it, are in
flight together, and acknowledgements follow in a pipeline (bounded by `MAX_IN_FLIGHT`).

A send the broker refuses (after the producer's own retries) is sent again, with backoff,
until it is durable; meanwhile the agent takes no new event, so nothing is acknowledged past
it and its key's order holds. Only input that breaks the contract goes to the dead-letter
topic (with the reason), and that letter must be durable before the event is acknowledged. A
handler that raises is a bug: its event is dead-lettered too (Faust would ack it silently) and
the flow goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from prometheus_client import Counter
from pydantic import TypeAdapter, ValidationError

from schemas import events
from schemas.deadletters import DeadLetter
from schemas.envelope import Envelope
from schemas.outcomes import ErrorKind
from streams.flows.emit import Emit
from threadlink.logs import handling

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Events whose outputs may be in flight at once, per agent.
MAX_IN_FLIGHT = 1000
#: Backoff of a send the broker refused, doubling up to the maximum.
RESEND_INITIAL_S = 0.2
RESEND_MAX_S = 10.0

EVENTS = Counter(
    "threadlink_stream_events_total", "Events the flows consumed, by agent and outcome.", ["agent", "outcome"]
)
RESENDS = Counter("threadlink_stream_resends_total", "Outputs sent again after the broker refused them.", ["agent"])

Handler = Callable[[Envelope[Any], str], Sequence[Emit]]
"""(envelope, the event's Kafka key) -> what to send."""


@dataclass
class _InFlight:
    event: Any
    emits: Sequence[Emit]
    sent: list[Any]


@dataclass
class FlowRunner(Generic[T]):
    """Runs one agent's loop. `handler` is a pure decision (it may read and change the tables:
    Faust has set the event it is called for as the current one).

    Two tasks share the in-flight queue: the agent's loop decides and sends, the acknowledger
    waits for each event's outputs in order and acknowledges it. One event loop, so the queue
    needs no lock."""

    agent: str
    adapter: TypeAdapter[Envelope[T]]
    handler: Handler
    producer: Any
    """The app's producer (`app.producer`): outputs are sent through it directly, without Faust's
    per-message topic and channel objects, which cost as much again as the send itself."""
    dead_letters: str
    in_flight: deque[_InFlight] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._healthy = asyncio.Event()
        self._healthy.set()

    async def run(self, stream: Any) -> None:
        acknowledger = asyncio.create_task(self._acknowledge_forever(stream), name=f"{self.agent}-acks")
        try:
            async for event in stream.noack().events():
                # A refused output is being sent again: take nothing new until it is durable.
                await self._healthy.wait()
                emits = self._decide(event)
                self.in_flight.append(_InFlight(event, emits, [await self._send(e) for e in emits]))
                self._arrived.set()
                while len(self.in_flight) >= MAX_IN_FLIGHT:
                    self._room.clear()
                    await self._room.wait()
                if acknowledger.done():
                    acknowledger.result()  # it failed: let Faust restart the agent
        finally:
            acknowledger.cancel()
            # Not acknowledged: on the next start these are read again; their outputs carry the
            # same ids, so the sinks' ledger keeps each side effect single.
            self.in_flight.clear()

    async def _acknowledge_forever(self, stream: Any) -> None:
        while True:
            if not self.in_flight:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            oldest = self.in_flight[0]
            await self._settle(oldest)
            self.in_flight.popleft()
            await stream.ack(oldest.event)
            self._room.set()

    def _decide(self, event: Any) -> Sequence[Emit]:
        try:
            envelope = self.adapter.validate_json(event.value)
        except ValidationError as exc:
            EVENTS.labels(self.agent, "invalid").inc()
            return [self._letter(event, "invalid", f"not a valid envelope here: {exc.error_count()} problem(s)")]
        key = event.key.decode("utf-8", "replace") if isinstance(event.key, bytes) else str(event.key or "")
        try:
            with handling(envelope.id, envelope.traceparent):  # its log lines carry its ids
                emits = self.handler(envelope, key)
        except Exception as exc:
            log.exception("%s: handling %s failed", self.agent, envelope.id)
            EVENTS.labels(self.agent, "failed").inc()
            # Validation messages quote the input (titles, links): the reason names the problem only.
            detail = f"{exc.error_count()} problem(s)" if isinstance(exc, ValidationError) else str(exc)[:200]
            return [self._letter(event, "fatal", f"{type(exc).__name__}: {detail}")]
        EVENTS.labels(self.agent, "handled").inc()
        return emits

    def _letter(self, event: Any, kind: ErrorKind, reason: str) -> Emit:
        letter = DeadLetter.of_record(event.message, error_kind=kind, reason=reason, consumer=f"streams.{self.agent}")
        log.error("%s: dead-lettering %s[%d]@%d: %s", self.agent, letter.topic, letter.partition, letter.offset, reason)
        envelope = Envelope.wrap(
            letter, type=events.DEAD_LETTER, source_system=self.agent, subject=letter.key, visibility="restricted"
        )
        return Emit(self.dead_letters, letter.key or "", envelope)

    async def _send(self, emit: Emit) -> Any:
        """Hand one output to the producer; returns the future of its acknowledgement."""
        return await self.producer.send(
            emit.topic,
            key=emit.key.encode(),
            value=emit.envelope.to_bytes(),
            partition=None,
            timestamp=None,
            headers=emit.envelope.kafka_headers(),
        )

    async def _settle(self, item: _InFlight) -> None:
        """Wait until every output of one event is durable, sending again what was refused."""
        delay = RESEND_INITIAL_S
        while True:
            failed: list[int] = []
            for index, future in enumerate(item.sent):
                try:
                    await future
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("%s: the broker refused an output (%r); sending it again", self.agent, exc)
                    failed.append(index)
            if not failed:
                self._healthy.set()
                return
            self._healthy.clear()
            RESENDS.labels(self.agent).inc(len(failed))
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESEND_MAX_S)
            for index in failed:
                item.sent[index] = await self._send(item.emits[index])
