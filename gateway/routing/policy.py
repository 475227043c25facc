"""Retry decisions for a southbound call: pure functions over a `RegionCallError` and numbers.

Invariants, in plain words:

- Only three failures are retried (AIP-194, gRFC A6): UNAVAILABLE; DEADLINE_EXCEEDED of an
  attempt timeout the gateway set (every southbound RPC is idempotent, delivery by
  application id); RESOURCE_EXHAUSTED only when the province pushed back with a delay (a
  `grpc-retry-pushback-ms` >= 0 or a `RetryInfo`). Everything else is final for this call.
- A negative `grpc-retry-pushback-ms` forbids a retry, whatever the code.
- A DEADLINE_EXCEEDED is ours when it carries no ErrorInfo reason: grpc raises it locally when
  the `timeout=` we passed expires. One with a reason was produced by the province itself
  (its own downstream deadline) and is not retried.
- `definitive` marks the answers about the request rather than about the province (a bad
  request, an unknown local code, a failed precondition): retrying later cannot help, so the
  application must not stay queued. Auth failures are not definitive: they are fixed by
  configuration, not by the applicant.
- `unhealthy` marks the failures that say the province is ill (UNAVAILABLE, our attempt
  timeouts, RESOURCE_EXHAUSTED); only they count against its circuit breaker.
- A decision's `reason` is one of `REASONS`: a small fixed set, fit for a metric label.
- Backoff is full jitter, uniform(0, min(max_backoff, initial_backoff * 2**(attempt-1))),
  unless the province said how long to wait; then its delay is used as is (the deadline, not
  the backoff cap, bounds it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc

from gateway.errors import RegionCallError

__all__ = [
    "REASONS",
    "RetryDecision",
    "RetryPolicy",
    "attempt_timeout",
    "backoff",
    "call_budget",
    "classify",
]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one southbound call is tried. Times are in seconds."""

    max_attempts: int = 4
    """Attempts per call, the first included."""
    initial_backoff: float = 0.05
    """Upper bound of the jittered wait before the second attempt; doubles per attempt."""
    max_backoff: float = 2.0
    """Cap of the jittered wait (not of a delay the province asks for)."""
    per_attempt_timeout: float = 1.0
    """Longest single attempt; an attempt also never outlives the call's deadline."""
    min_attempt_time: float = 0.02
    """Never start an attempt with less than this left before the deadline."""
    deadline_margin: float = 0.1
    """Kept back from the caller's deadline, to answer the caller before it gives up: the
    result's durable write and the answer must fit in it, also on a loaded host."""
    default_budget: float = 5.0
    """The whole call's time when the caller set no deadline."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for name in (
            "initial_backoff",
            "max_backoff",
            "per_attempt_timeout",
            "min_attempt_time",
            "deadline_margin",
            "default_budget",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.per_attempt_timeout < self.min_attempt_time:
            raise ValueError("per_attempt_timeout must be at least min_attempt_time")


REASONS = frozenset(
    {"unavailable", "attempt_timeout", "pushback", "pushback_refused", "not_retryable"}
)
"""Every `RetryDecision.reason`: the values of a metric label."""


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What one failed attempt means for the call it belongs to."""

    retry: bool
    """Try again within this call."""
    reason: str
    """Why, one of `REASONS`."""
    delay: float | None = None
    """Seconds the province asked us to wait before retrying; None = our own backoff."""
    definitive: bool = False
    """The province refused the request itself: retrying later cannot help."""
    unhealthy: bool = False
    """The failure says the province is ill: it counts against its circuit breaker."""


_DEFINITIVE = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)

_HEALTH = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)

_NOT_RETRYABLE = RetryDecision(retry=False, reason="not_retryable")
_PUSHBACK_REFUSED = RetryDecision(retry=False, reason="pushback_refused", unhealthy=True)
_REFUSED = RetryDecision(retry=False, reason="not_retryable", definitive=True)


def classify(error: RegionCallError) -> RetryDecision:
    """Decides whether the failure `error` may be retried within the same call."""
    code = error.code
    if error.pushback_ms is not None and error.pushback_ms < 0 and code in _HEALTH:
        return _PUSHBACK_REFUSED
    if code is grpc.StatusCode.UNAVAILABLE:
        return _server_directed(error, "unavailable", default_retry=True)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return _server_directed(error, "pushback", default_retry=False)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        if error.reason:
            return _NOT_RETRYABLE
        return RetryDecision(retry=True, reason="attempt_timeout", unhealthy=True)
    if code in _DEFINITIVE:
        return _REFUSED
    return _NOT_RETRYABLE


def _server_directed(error: RegionCallError, reason: str, *, default_retry: bool) -> RetryDecision:
    # gRFC A6: the pushback header wins over RetryInfo (a negative one was handled above).
    if error.pushback_ms is not None:
        return RetryDecision(
            retry=True, reason=reason, delay=error.pushback_ms / 1000.0, unhealthy=True
        )
    if error.retry_delay is not None and error.retry_delay >= 0:
        return RetryDecision(retry=True, reason=reason, delay=error.retry_delay, unhealthy=True)
    if default_retry:
        return RetryDecision(retry=True, reason=reason, unhealthy=True)
    return RetryDecision(retry=False, reason="not_retryable", unhealthy=True)


_MAX_EXPONENT = 64  # 2**64 times any sane initial backoff is past any cap; avoids overflow.


def backoff(
    attempt: int,
    policy: RetryPolicy,
    rng: Callable[[], float],
    *,
    server_delay: float | None = None,
) -> float:
    """Seconds to wait after failed attempt number `attempt` (from 1) before the next one.

    `rng` returns a float in [0, 1), like `random.random`. A `server_delay` (pushback or
    RetryInfo) replaces the jitter.
    """
    if server_delay is not None:
        return max(0.0, server_delay)
    exponent = min(max(attempt - 1, 0), _MAX_EXPONENT)
    cap = min(policy.max_backoff, policy.initial_backoff * 2.0**exponent)
    return cap * rng()


def attempt_timeout(remaining: float, policy: RetryPolicy) -> float | None:
    """The timeout of an attempt started with `remaining` seconds left; None = do not start."""
    if remaining < policy.min_attempt_time:
        return None
    return min(policy.per_attempt_timeout, remaining)


def call_budget(caller_time_remaining: float | None, policy: RetryPolicy) -> float:
    """Seconds the whole southbound call may take, from the caller's remaining time.

    `caller_time_remaining` is `context.time_remaining()`: None when the caller set no
    deadline (grpc does not propagate one), which gets the policy's default ceiling.
    """
    if caller_time_remaining is None:
        return policy.default_budget
    return max(0.0, caller_time_remaining - policy.deadline_margin)
