"""A change to kafka-python (3.0.12) that threadlink carries until upstream has it.
`install()` applies it; connectors/runtime/kafka.py calls it before making a producer.
docs/upstream/kafka-python.md is the note for the maintainers; tested on the real broker by
tests/integration/test_producer_outage.py.

An idempotent producer whose broker is away longer than `delivery_timeout_ms`, with batches in
flight, never produces again. The expired batches had been sent, so the sender resets the
producer id (`TransactionManager.reset_producer_id`: their sequence numbers may or may not have
been written). The reset clears the id but leaves the state READY, and the sender's loop asks
for a new id through `init_producer_id()`, which acts only in UNINITIALIZED. So no
InitProducerId request is ever sent, the produce gate (`not has_producer_id()`) holds every
batch back, and every send expires, for the life of the process: a connector answered every
webhook 503 until it was restarted (CI run of 7190f34, a broker stopped for minutes).

The fix: after the reset, an idempotent (non-transactional) producer is UNINITIALIZED again,
as a new producer is, so the next sender iteration asks for a new id; Java's producer does
the same (`TransactionManager.resetIdempotentProducerId` → `transitionTo(UNINITIALIZED)`).
"""

from __future__ import annotations

import functools
from typing import Any

from kafka.producer.transaction_manager import TransactionManager, TransactionState

_INSTALLED = "_threadlink_reset_reinitialises"


def install() -> None:
    """Idempotent: the patch is applied once per process."""
    if getattr(TransactionManager.reset_producer_id, _INSTALLED, False):
        return
    original = TransactionManager.reset_producer_id

    @functools.wraps(original)
    def reset_producer_id(self: Any) -> None:
        original(self)
        with self._lock:
            if not self.is_transactional() and self._current_state != TransactionState.FATAL_ERROR:
                # _transition_to refuses UNINITIALIZED as a target; __init__ sets it the same way.
                self._current_state = TransactionState.UNINITIALIZED

    setattr(reset_producer_id, _INSTALLED, True)
    TransactionManager.reset_producer_id = reset_producer_id  # type: ignore[method-assign]
