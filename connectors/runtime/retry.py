"""The one retry policy: only RetriableError is retried, with exponential backoff and jitter,
never sooner than the platform's Retry-After. Connectors tune it by attributes, not copies."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_exponential_jitter

from connectors.errors import RetriableError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    max_total_s: float = 120.0
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def _wait(self) -> Callable[[RetryCallState], float]:
        backoff = wait_exponential_jitter(multiplier=self.initial_backoff_s, max=self.max_backoff_s)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            retry_after = getattr(exc, "retry_after", None) or 0.0
            return max(backoff(state), min(float(retry_after), self.max_total_s))

        return wait

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        on_retry: Callable[[RetryCallState], Any] | None = None,
    ) -> T:
        """Run the coroutine function `fn` until it succeeds, raises a non-retriable error, or
        the budget is spent (then the last RetriableError is raised). Not a lambda returning a
        coroutine: tenacity would take the coroutine itself for the result, never awaiting it."""
        if not inspect.iscoroutinefunction(fn):
            raise TypeError("RetryPolicy.call needs an async function")
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RetriableError),
            wait=self._wait(),
            stop=stop_after_attempt(self.max_attempts) | stop_after_delay(self.max_total_s),
            reraise=True,
            before_sleep=on_retry,
        )
        return await retrying(fn)
