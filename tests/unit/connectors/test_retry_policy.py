import time

import pytest

from connectors.errors import FatalError, RetriableError
from connectors.runtime.retry import RetryPolicy

pytestmark = pytest.mark.unit

FAST = RetryPolicy(max_attempts=4, initial_backoff_s=0.001, max_backoff_s=0.01)


async def test_retries_only_retriable_errors_until_success() -> None:
    outcomes: list[Exception | None] = [RetriableError("503"), RetriableError("timeout"), None]

    async def call() -> str:
        outcome = outcomes.pop(0)
        if outcome:
            raise outcome
        return "done"

    assert await FAST.call(call) == "done"
    assert outcomes == []


async def test_fatal_is_not_retried_and_budget_ends_with_the_last_error() -> None:
    calls = 0

    async def fatal() -> None:
        nonlocal calls
        calls += 1
        raise FatalError("401")

    with pytest.raises(FatalError):
        await FAST.call(fatal)
    assert calls == 1

    async def always_down() -> None:
        raise RetriableError("503")

    with pytest.raises(RetriableError):
        await FAST.call(always_down)


async def test_retry_after_is_honoured() -> None:
    attempts: list[float] = []

    async def limited() -> None:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise RetriableError("429", retry_after=0.2)

    await FAST.call(limited)
    assert attempts[1] - attempts[0] >= 0.2


async def test_a_lambda_returning_a_coroutine_is_refused() -> None:
    async def work() -> None:
        return None

    with pytest.raises(TypeError, match="async function"):
        await FAST.call(lambda: work())  # type: ignore[arg-type,return-value]
