"""The retry loop of one southbound call: attempts, backoff, budget, breaker and deadline.

Invariants, in plain words:

- No attempt starts with less than `policy.min_attempt_time` before `deadline`, and every
  attempt's timeout is min(per_attempt_timeout, deadline - now): an attempt never outlives
  the call.
- Every attempt made is emitted as `AttemptStarted`, then `AttemptFinished` with its code,
  however it ends.
- The breaker is asked before every attempt; when it refuses, the call ends at once
  (`breaker_open`) without calling the province. Every attempt let through reports back:
  `record_failure` for a failure that says the province is ill, `record_success` for any other
  answer, `release` when it ends without one (cancelled, an unexpected exception, or a timeout
  shorter than `per_attempt_timeout`: the caller's deadline, not the province, cut it short).
- A call counts as one request of the province's retry budget, recorded when its first attempt
  starts; every retry takes one token before its backoff, and an empty budget ends the call
  (`budget_exhausted`).
- The happy path is one plain await: tenacity is entered only after a first retryable failure
  (building it per call is costly), and a fresh `AsyncRetrying` is built for each such call (a
  shared one corrupts its state under concurrency). Its attempt 1 replays the failure already
  seen, so its counting, wait and stop apply from the second attempt on with our attempt
  numbers.
- The wait honours the province's pushback or RetryInfo exactly, else full jitter; a wait
  that would leave less than `min_attempt_time` before the deadline ends the call (`deadline`).
- `asyncio.CancelledError` (the caller went away) propagates at once, from an attempt or a
  backoff; so does any exception that is not a `RegionCallError`.
- Giving up always raises `DeliveryFailed`; its `retryable` is False only when the province
  definitively refused the request (`policy.RetryDecision.definitive`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Literal, TypeVar

import tenacity
from tenacity.stop import stop_base

from gateway.errors import RegionCallError
from gateway.events import (
    NO_EVENTS,
    AttemptFinished,
    AttemptStarted,
    Events,
    PushbackHonoured,
    RetryBudgetExhausted,
    RetryGranted,
)
from gateway.routing.breaker import CircuitBreaker
from gateway.routing.budget import RetryBudget
from gateway.routing.policy import RetryDecision, RetryPolicy, attempt_timeout, backoff, classify

__all__ = ["OUTCOMES", "DeliveryFailed", "Outcome", "call_with_retries"]

T = TypeVar("T")

Outcome = Literal[
    "breaker_open", "budget_exhausted", "deadline", "attempts_exhausted", "not_retryable"
]
OUTCOMES: frozenset[Outcome] = frozenset(
    {"breaker_open", "budget_exhausted", "deadline", "attempts_exhausted", "not_retryable"}
)
"""Every `DeliveryFailed.outcome`: the values of a metric label."""


class DeliveryFailed(Exception):
    """A southbound call gave up; routing decides what the caller sees."""

    def __init__(
        self,
        region_code: str,
        outcome: Outcome,
        *,
        last_error: RegionCallError | None,
        attempts: int,
        retryable: bool,
    ) -> None:
        detail = f": {last_error}" if last_error is not None else ""
        super().__init__(f"{region_code}: {outcome} after {attempts} attempt(s){detail}")
        self.region_code = region_code
        """The province called."""
        self.outcome = outcome
        """Why the call gave up, one of `OUTCOMES`."""
        self.last_error = last_error
        """The last attempt's failure; None when no attempt was made."""
        self.attempts = attempts
        """Attempts made (calls into the province)."""
        self.retryable = retryable
        """True: could not deliver now, keep it queued. False: the province refused it."""


async def call_with_retries(
    attempt: Callable[[float, int], Awaitable[T]],
    *,
    region_code: str,
    policy: RetryPolicy,
    budget: RetryBudget,
    breaker: CircuitBreaker,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    events: Events = NO_EVENTS,
) -> T:
    """Runs `attempt(timeout_seconds, attempt_number)` until it succeeds or the call gives up.

    `deadline` is an instant on `clock` (see `policy.call_budget`). `attempt` makes ONE call to
    the province and raises `RegionCallError` on failure. Raises `DeliveryFailed` on giving up.
    """
    call = _Call(
        attempt,
        region_code=region_code,
        policy=policy,
        budget=budget,
        breaker=breaker,
        deadline=deadline,
        clock=clock,
        events=events,
    )
    try:
        return await call.attempt_once()
    except RegionCallError as error:
        first_error = error
    decision = call.decision
    if not decision.retry:
        raise call.failed("not_retryable", retryable=not decision.definitive) from first_error
    if policy.max_attempts == 1:
        raise call.failed("attempts_exhausted") from first_error

    replayed = False

    async def next_attempt() -> T:
        nonlocal replayed
        if not replayed:
            replayed = True
            raise first_error
        return await call.attempt_once()

    retrying = tenacity.AsyncRetrying(
        sleep=sleep,
        stop=tenacity.stop_after_attempt(policy.max_attempts) | _Admission(call),
        wait=lambda state: backoff(
            state.attempt_number, policy, rng, server_delay=call.decision.delay
        ),
        retry=call.should_retry,
        reraise=True,
    )
    try:
        return await retrying(next_attempt)
    except RegionCallError as error:
        raise call.failed(call.outcome, retryable=call.retryable) from error


class _Call(Generic[T]):
    """The state of one `call_with_retries`."""

    __slots__ = (
        "attempts",
        "breaker",
        "budget",
        "clock",
        "deadline",
        "decision",
        "events",
        "fn",
        "last_error",
        "outcome",
        "policy",
        "region_code",
        "retryable",
    )

    def __init__(
        self,
        fn: Callable[[float, int], Awaitable[T]],
        *,
        region_code: str,
        policy: RetryPolicy,
        budget: RetryBudget,
        breaker: CircuitBreaker,
        deadline: float,
        clock: Callable[[], float],
        events: Events,
    ) -> None:
        self.fn = fn
        self.region_code = region_code
        self.policy = policy
        self.budget = budget
        self.breaker = breaker
        self.deadline = deadline
        self.clock = clock
        self.events = events
        self.attempts = 0
        self.last_error: RegionCallError | None = None
        self.decision = _NO_DECISION
        # What ends the call when tenacity's stop fires; the admission stop overwrites it.
        self.outcome: Outcome = "attempts_exhausted"
        self.retryable = True

    async def attempt_once(self) -> T:
        """Makes the next attempt, unless the deadline or the breaker refuses it."""
        timeout = attempt_timeout(self.deadline - self.clock(), self.policy)
        if timeout is None:
            raise self.failed("deadline")
        # The breaker is asked last, so that half-open counts as out only a call that is made.
        breaker = self.breaker
        if not breaker.allow():
            raise self.failed("breaker_open")
        self.attempts += 1
        number = self.attempts
        if number == 1:
            self.budget.record_request()
        self.events.emit(AttemptStarted(self.region_code, number))
        code, reason = "OK", ""
        try:
            result = await self.fn(timeout, number)
        except RegionCallError as error:
            code, reason = error.code.name, error.reason
            decision = classify(error)
            self.decision = decision
            self.last_error = error
            if decision.reason == "attempt_timeout" and timeout < self.policy.per_attempt_timeout:
                breaker.release()  # cut short by the caller's deadline: no verdict on the province
            elif decision.unhealthy:
                breaker.record_failure()
            else:
                breaker.record_success()
            if error.pushback_ms is not None or error.retry_delay is not None:
                self.events.emit(PushbackHonoured(self.region_code))
            raise
        except BaseException as error:
            code = "CANCELLED" if isinstance(error, asyncio.CancelledError) else "UNKNOWN"
            breaker.release()
            raise
        finally:
            self.events.emit(AttemptFinished(self.region_code, number, code, reason))
        breaker.record_success()
        return result

    def should_retry(self, state: tenacity.RetryCallState) -> bool:
        """tenacity's retry predicate: the decision on the failure just seen."""
        outcome = state.outcome
        if outcome is None or not isinstance(outcome.exception(), RegionCallError):
            return False  # DeliveryFailed from a refused attempt, or a bug: let it through.
        if not self.decision.retry:
            self.outcome = "not_retryable"
            self.retryable = not self.decision.definitive
            return False
        return True

    def failed(self, outcome: Outcome, *, retryable: bool = True) -> DeliveryFailed:
        return DeliveryFailed(
            self.region_code,
            outcome,
            last_error=self.last_error,
            attempts=self.attempts,
            retryable=retryable,
        )


class _Admission(stop_base):
    """tenacity stop: refuses a retry past the deadline, then one the budget cannot pay for."""

    def __init__(self, call: _Call[Any]) -> None:
        self._call = call

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        call = self._call
        # tenacity computed the wait before asking us: the next attempt would start after it.
        start = call.clock() + retry_state.upcoming_sleep
        if start + call.policy.min_attempt_time > call.deadline:
            call.outcome = "deadline"
            return True
        if not call.budget.try_acquire_retry():
            call.outcome = "budget_exhausted"
            call.events.emit(RetryBudgetExhausted(call.region_code))
            return True
        call.events.emit(RetryGranted(call.region_code, call.decision.reason))
        return False


_NO_DECISION = RetryDecision(retry=False, reason="not_retryable")
