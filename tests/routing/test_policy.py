"""Retry decisions: which failures are retried, how long to wait, how long an attempt may take."""

from __future__ import annotations

from typing import TypeAlias

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import RegionCallError
from gateway.routing.policy import (
    REASONS,
    RetryDecision,
    RetryPolicy,
    attempt_timeout,
    backoff,
    call_budget,
    classify,
)

POLICY = RetryPolicy()


def error(
    code: grpc.StatusCode,
    *,
    reason: str = "",
    pushback_ms: int | None = None,
    retry_delay: float | None = None,
) -> RegionCallError:
    return RegionCallError(
        "440000", code, "boom", reason=reason, pushback_ms=pushback_ms, retry_delay=retry_delay
    )


NEVER_RETRIED = [
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.ABORTED,
]
HEALTH_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def test_every_status_code_is_either_listed_as_never_retried_or_a_health_code() -> None:
    listed = set(NEVER_RETRIED) | HEALTH_CODES | {grpc.StatusCode.OK}
    assert listed == set(grpc.StatusCode)


def test_unavailable_is_retried_with_our_backoff() -> None:
    decision = classify(error(grpc.StatusCode.UNAVAILABLE))
    assert (decision.retry, decision.reason, decision.delay) == (True, "unavailable", None)
    assert decision.unhealthy
    assert not decision.definitive


def test_unavailable_with_pushback_waits_as_told() -> None:
    decision = classify(error(grpc.StatusCode.UNAVAILABLE, pushback_ms=250))
    assert (decision.retry, decision.reason, decision.delay) == (True, "unavailable", 0.25)


def test_unavailable_with_retry_info_waits_as_told() -> None:
    decision = classify(error(grpc.StatusCode.UNAVAILABLE, retry_delay=1.5))
    assert (decision.retry, decision.delay) == (True, 1.5)


def test_pushback_header_wins_over_retry_info() -> None:
    decision = classify(error(grpc.StatusCode.UNAVAILABLE, pushback_ms=100, retry_delay=3.0))
    assert decision.delay == 0.1


def test_negative_pushback_forbids_retry_even_with_retry_info() -> None:
    decision = classify(error(grpc.StatusCode.UNAVAILABLE, pushback_ms=-1, retry_delay=1.0))
    assert (decision.retry, decision.reason) == (False, "pushback_refused")
    assert decision.unhealthy
    assert not decision.definitive


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    ],
    ids=lambda c: c.name,
)
def test_negative_pushback_forbids_retry_whatever_the_code(code: grpc.StatusCode) -> None:
    decision = classify(error(code, pushback_ms=-1))
    assert (decision.retry, decision.reason, decision.definitive) == (
        False,
        "pushback_refused",
        False,
    )


def test_our_attempt_timeout_is_retried() -> None:
    decision = classify(error(grpc.StatusCode.DEADLINE_EXCEEDED))
    assert (decision.retry, decision.reason, decision.unhealthy) == (True, "attempt_timeout", True)


def test_a_deadline_the_province_reports_itself_is_not_retried() -> None:
    decision = classify(error(grpc.StatusCode.DEADLINE_EXCEEDED, reason="UPSTREAM_TIMEOUT"))
    assert (decision.retry, decision.reason) == (False, "not_retryable")


def test_resource_exhausted_is_retried_only_with_pushback() -> None:
    plain = classify(error(grpc.StatusCode.RESOURCE_EXHAUSTED))
    assert (plain.retry, plain.reason, plain.unhealthy) == (False, "not_retryable", True)
    pushed = classify(error(grpc.StatusCode.RESOURCE_EXHAUSTED, pushback_ms=0))
    assert (pushed.retry, pushed.reason, pushed.delay) == (True, "pushback", 0.0)
    told = classify(error(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_delay=2.0))
    assert (told.retry, told.reason, told.delay) == (True, "pushback", 2.0)
    refused = classify(error(grpc.StatusCode.RESOURCE_EXHAUSTED, pushback_ms=-5))
    assert (refused.retry, refused.reason) == (False, "pushback_refused")


@pytest.mark.parametrize("code", NEVER_RETRIED, ids=lambda c: c.name)
def test_never_retried_codes(code: grpc.StatusCode) -> None:
    decision = classify(error(code))
    assert not decision.retry
    assert decision.reason == "not_retryable"
    assert not decision.unhealthy, "the province answered: not its ill-health"


@pytest.mark.parametrize(
    ("code", "definitive"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, True),
        (grpc.StatusCode.NOT_FOUND, True),
        (grpc.StatusCode.ALREADY_EXISTS, True),
        (grpc.StatusCode.FAILED_PRECONDITION, True),
        (grpc.StatusCode.OUT_OF_RANGE, True),
        (grpc.StatusCode.PERMISSION_DENIED, False),
        (grpc.StatusCode.UNAUTHENTICATED, False),
        (grpc.StatusCode.CANCELLED, False),
        (grpc.StatusCode.INTERNAL, False),
        (grpc.StatusCode.UNKNOWN, False),
    ],
    ids=lambda v: v.name if isinstance(v, grpc.StatusCode) else str(v),
)
def test_only_answers_about_the_request_are_definitive(
    code: grpc.StatusCode, definitive: bool
) -> None:
    assert classify(error(code)).definitive is definitive


codes = st.sampled_from(list(grpc.StatusCode))
pushbacks = st.none() | st.integers(min_value=-10_000, max_value=10_000)
delays = st.none() | st.floats(min_value=0, max_value=100)
reasons = st.sampled_from(["", "LOCAL_CODE_NOT_FOUND", "UNAVAILABLE"])


@settings(max_examples=500)
@given(code=codes, pushback_ms=pushbacks, retry_delay=delays, reason=reasons)
def test_classify_properties(
    code: grpc.StatusCode, pushback_ms: int | None, retry_delay: float | None, reason: str
) -> None:
    decision = classify(
        error(code, reason=reason, pushback_ms=pushback_ms, retry_delay=retry_delay)
    )
    assert decision.reason in REASONS
    if decision.retry:
        assert code in HEALTH_CODES
        assert pushback_ms is None or pushback_ms >= 0
        assert not decision.definitive
    if code in NEVER_RETRIED:
        assert not decision.retry
    if decision.delay is not None:
        assert decision.delay >= 0
    if decision.definitive:
        assert not decision.unhealthy


def test_backoff_is_full_jitter_doubling_to_the_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=1.0)
    top = 0.999999
    assert backoff(1, policy, lambda: top) == pytest.approx(0.1 * top)
    assert backoff(2, policy, lambda: top) == pytest.approx(0.2 * top)
    assert backoff(4, policy, lambda: top) == pytest.approx(0.8 * top)
    assert backoff(5, policy, lambda: top) == pytest.approx(1.0 * top)
    assert backoff(50, policy, lambda: top) == pytest.approx(1.0 * top)
    assert backoff(3, policy, lambda: 0.0) == 0.0
    assert backoff(3, policy, lambda: 0.5) == pytest.approx(0.2)


def test_backoff_honours_the_province_delay_exactly_even_past_the_cap() -> None:
    assert backoff(1, POLICY, lambda: 0.5, server_delay=7.0) == 7.0
    assert backoff(3, POLICY, lambda: 0.5, server_delay=0.0) == 0.0


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    initial=st.floats(min_value=0, max_value=10),
    cap=st.floats(min_value=0, max_value=60),
    draw=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_backoff_is_always_within_zero_and_the_cap(
    attempt: int, initial: float, cap: float, draw: float
) -> None:
    policy = RetryPolicy(initial_backoff=initial, max_backoff=cap)
    wait = backoff(attempt, policy, lambda: draw)
    assert 0 <= wait <= cap
    assert wait <= initial * 2.0 ** min(attempt - 1, 64)


def test_attempt_timeout() -> None:
    assert attempt_timeout(10.0, POLICY) == POLICY.per_attempt_timeout
    assert attempt_timeout(0.3, POLICY) == 0.3
    assert attempt_timeout(POLICY.min_attempt_time, POLICY) == POLICY.min_attempt_time
    assert attempt_timeout(POLICY.min_attempt_time / 2, POLICY) is None
    assert attempt_timeout(0.0, POLICY) is None
    assert attempt_timeout(-1.0, POLICY) is None


@given(remaining=st.floats(min_value=-10, max_value=100, allow_nan=False))
def test_attempt_timeout_never_exceeds_the_remaining_budget(remaining: float) -> None:
    timeout = attempt_timeout(remaining, POLICY)
    if timeout is None:
        assert remaining < POLICY.min_attempt_time
    else:
        assert POLICY.min_attempt_time <= timeout <= remaining
        assert timeout <= POLICY.per_attempt_timeout


def test_call_budget() -> None:
    assert call_budget(None, POLICY) == POLICY.default_budget
    assert call_budget(2.0, POLICY) == pytest.approx(2.0 - POLICY.deadline_margin)
    assert call_budget(0.01, POLICY) == 0.0
    # A caller's long deadline is the caller's choice: it is not cut to the default.
    assert call_budget(60.0, POLICY) == pytest.approx(60.0 - POLICY.deadline_margin)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"initial_backoff": -1.0},
        {"per_attempt_timeout": 0.01, "min_attempt_time": 0.02},
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


S: TypeAlias = grpc.StatusCode
RE = S.RESOURCE_EXHAUSTED
DE = S.DEADLINE_EXCEEDED
# (code, ErrorInfo reason, pushback ms, RetryInfo delay) → the whole decision:
# (retry, reason, delay, definitive, unhealthy). Written out, not derived from the module.
DECISIONS: list[tuple[tuple[S, str, int | None, float | None], RetryDecision]] = [
    ((S.UNAVAILABLE, "", None, None), RetryDecision(True, "unavailable", None, False, True)),
    ((S.UNAVAILABLE, "", 250, None), RetryDecision(True, "unavailable", 0.25, False, True)),
    ((S.UNAVAILABLE, "", None, 1.5), RetryDecision(True, "unavailable", 1.5, False, True)),
    ((S.UNAVAILABLE, "", 100, 3.0), RetryDecision(True, "unavailable", 0.1, False, True)),
    ((S.UNAVAILABLE, "", None, -1.0), RetryDecision(True, "unavailable", None, False, True)),
    ((S.UNAVAILABLE, "", -1, 1.0), RetryDecision(False, "pushback_refused", None, False, True)),
    ((RE, "", None, None), RetryDecision(False, "not_retryable", None, False, True)),
    ((RE, "", 0, None), RetryDecision(True, "pushback", 0.0, False, True)),
    ((RE, "", None, 2.0), RetryDecision(True, "pushback", 2.0, False, True)),
    ((RE, "", -5, None), RetryDecision(False, "pushback_refused", None, False, True)),
    ((DE, "", None, None), RetryDecision(True, "attempt_timeout", None, False, True)),
    ((DE, "", -1, None), RetryDecision(False, "pushback_refused", None, False, True)),
    ((DE, "UPSTREAM", None, None), RetryDecision(False, "not_retryable")),
    ((S.INVALID_ARGUMENT, "", None, None), RetryDecision(False, "not_retryable", None, True)),
    ((S.NOT_FOUND, "", 100, 1.0), RetryDecision(False, "not_retryable", None, True)),
    ((S.INVALID_ARGUMENT, "", -1, None), RetryDecision(False, "not_retryable", None, True)),
    ((S.PERMISSION_DENIED, "", None, None), RetryDecision(False, "not_retryable")),
    ((S.INTERNAL, "", 100, None), RetryDecision(False, "not_retryable")),
]  # fmt: skip


@pytest.mark.parametrize(("case", "expected"), DECISIONS, ids=lambda v: repr(v)[:60])
def test_the_whole_decision_of_each_case(
    case: tuple[S, str, int | None, float | None], expected: RetryDecision
) -> None:
    code, reason, pushback_ms, retry_delay = case
    decision = classify(
        error(code, reason=reason, pushback_ms=pushback_ms, retry_delay=retry_delay)
    )
    assert decision == expected


def test_the_smallest_valid_policy_is_accepted() -> None:
    # The bounds are inclusive: one attempt, and an attempt exactly as long as the least.
    policy = RetryPolicy(max_attempts=1, per_attempt_timeout=0.02, min_attempt_time=0.02)
    assert (policy.max_attempts, policy.per_attempt_timeout) == (1, 0.02)
    assert RetryPolicy(initial_backoff=0.0, max_backoff=0.0, deadline_margin=0.0).max_backoff == 0


def test_a_retry_info_of_zero_means_retry_at_once() -> None:
    decision = classify(error(grpc.StatusCode.UNAVAILABLE, retry_delay=0.0))
    assert (decision.retry, decision.delay) == (True, 0.0)
