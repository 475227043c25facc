"""The per-province retry budget: retries stay within ratio x requests + floor per window."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.routing.budget import BudgetConfig, RetryBudget, SlidingWindow


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_floor_allows_a_few_retries_with_no_traffic() -> None:
    budget = RetryBudget(BudgetConfig(ratio=0.2, floor=3), clock=FakeClock())
    assert [budget.try_acquire_retry() for _ in range(5)] == [True, True, True, False, False]
    assert (budget.retries, budget.exhausted) == (3, 2)


def test_ratio_of_requests_on_top_of_the_floor() -> None:
    budget = RetryBudget(BudgetConfig(ratio=0.2, floor=3), clock=FakeClock())
    for _ in range(50):
        budget.record_request()
    granted = sum(budget.try_acquire_retry() for _ in range(100))
    assert granted == 13  # 0.2 * 50 + 3
    assert budget.exhausted == 87
    assert budget.window_counts() == (50, 13)


def test_retries_come_back_as_the_window_slides() -> None:
    clock = FakeClock(0.0)
    budget = RetryBudget(BudgetConfig(ratio=0.0, floor=2, window=10.0, buckets=10), clock=clock)
    assert budget.try_acquire_retry()
    clock.now = 5.0
    assert budget.try_acquire_retry()
    assert not budget.try_acquire_retry()
    clock.now = 10.0  # the retry at t=0 left the window [1, 11)
    assert budget.try_acquire_retry()
    assert not budget.try_acquire_retry()
    clock.now = 100.0  # everything left
    assert budget.window_counts() == (0, 0)
    assert budget.try_acquire_retry()


def test_counters_are_monotonic_totals() -> None:
    clock = FakeClock(0.0)
    budget = RetryBudget(BudgetConfig(ratio=0.0, floor=1), clock=clock)
    budget.record_request()
    budget.try_acquire_retry()
    budget.try_acquire_retry()
    clock.now = 1e6
    budget.record_request()
    assert (budget.requests, budget.retries, budget.exhausted) == (2, 1, 1)


@pytest.mark.parametrize(
    "kwargs",
    [{"ratio": -0.1}, {"floor": -1}, {"window": 0.0}, {"buckets": 0}],
)
def test_config_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        BudgetConfig(**kwargs)  # type: ignore[arg-type]


def test_sliding_window_drops_expired_buckets_only() -> None:
    clock = FakeClock(0.0)
    window = SlidingWindow(window=3.0, buckets=3, clock=clock)
    window.add_a()
    clock.now = 1.0
    window.advance()
    window.add_a()
    window.add_b()
    clock.now = 2.5
    window.advance()
    assert (window.a, window.b) == (2, 1)
    clock.now = 3.0
    window.advance()
    assert (window.a, window.b) == (1, 1)
    clock.now = 0.5  # backwards: stays in the current bucket
    window.advance()
    assert (window.a, window.b) == (1, 1)


# One event: advance the clock by `dt`, then record a request (True) or ask for a retry (False).
events = st.lists(
    st.tuples(st.floats(min_value=0, max_value=3.0), st.booleans()), min_size=1, max_size=300
)


@settings(max_examples=200)
@given(
    events=events,
    ratio=st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0]),
    floor=st.integers(min_value=0, max_value=5),
    buckets=st.integers(min_value=1, max_value=12),
)
def test_never_more_than_ratio_times_requests_plus_floor_retries_in_any_window(
    events: list[tuple[float, bool]], ratio: float, floor: int, buckets: int
) -> None:
    config = BudgetConfig(ratio=ratio, floor=floor, window=10.0, buckets=buckets)
    clock = FakeClock(0.0)
    budget = RetryBudget(config, clock=clock)
    width = config.window / buckets
    # A reference model: every event with its bucket index, counted from scratch.
    history: list[tuple[int, bool]] = []
    for dt, is_request in events:
        clock.now += dt
        bucket = math.floor(clock.now / width)
        if is_request:
            budget.record_request()
            history.append((bucket, True))
            continue
        requests = sum(1 for b, r in history if r and b > bucket - buckets)
        retries = sum(1 for b, r in history if not r and b > bucket - buckets)
        granted = budget.try_acquire_retry()
        if granted:
            history.append((bucket, False))
            retries += 1
            assert retries <= ratio * requests + floor
        else:
            # Refused only when granting would have broken the bound.
            assert retries + 1 > ratio * requests + floor
        assert budget.window_counts() == (requests, retries)
