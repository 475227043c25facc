"""When a failed call is tried again, and after how long.

Invariants:
- Only `Unavailable` is retried (AIP-194): every other error is raised at once.
- A retry repeats the same request; the caller's closure decides what that is (a submission
  keeps its `request_id`).
- The wait is the gateway's `RetryInfo` delay when it sent one, as it asked; otherwise full
  jitter under a doubling ceiling: uniform in [0, min(max_backoff, initial_backoff × 2ⁿ⁻¹)]
  after the n-th attempt.
- No attempt starts after `max_attempts`, nor a wait that would end more than `give_up_after`
  seconds after the first attempt started: the last error is raised instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)
from tenacity.wait import wait_base

from tongban_client.config import RetryPolicy
from tongban_client.errors import TongbanClientError, Unavailable

log = logging.getLogger("tongban_client")

T = TypeVar("T")


class _WaitAsAsked(wait_base):
    """The gateway's RetryInfo delay when the error carries one, else full jitter."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._jitter = wait_random_exponential(
            multiplier=policy.initial_backoff, max=policy.max_backoff
        )

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, TongbanClientError) and error.retry_delay is not None:
            return max(0.0, error.retry_delay)
        return float(self._jitter(retry_state))


async def call_with_retries(
    policy: RetryPolicy,
    what: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """The result of `attempt`, tried again as the policy says while it raises `Unavailable`;
    `what` names the call in the warning logged before each retry."""

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        reason = error.reason if isinstance(error, TongbanClientError) else ""
        log.warning(
            "%s: UNAVAILABLE%s; attempt %d of %d in %.3f s",
            what,
            f" ({reason})" if reason else "",
            state.attempt_number + 1,
            policy.max_attempts,
            state.upcoming_sleep,
        )

    retrier = AsyncRetrying(
        sleep=sleep,
        stop=stop_after_attempt(policy.max_attempts) | stop_before_delay(policy.give_up_after),
        wait=_WaitAsAsked(policy),
        retry=retry_if_exception_type(Unavailable),
        before_sleep=before_sleep,
        reraise=True,
    )
    result: T = await retrier(attempt)
    return result
