"""The per-province circuit breaker: open on failures, fail fast, probe, close."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.routing.breaker import BreakerConfig, BreakerState, CircuitBreaker


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(
    config: BreakerConfig | None = None,
) -> tuple[CircuitBreaker, FakeClock, list[tuple[BreakerState, BreakerState]]]:
    clock = FakeClock()
    transitions: list[tuple[BreakerState, BreakerState]] = []
    breaker = CircuitBreaker(
        config, clock=clock, on_transition=lambda old, new: transitions.append((old, new))
    )
    return breaker, clock, transitions


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.allow()
        breaker.record_failure()


def test_state_values_are_gauge_values() -> None:
    assert [s.value for s in BreakerState] == [0, 1, 2]
    assert [s.name for s in BreakerState] == ["CLOSED", "HALF_OPEN", "OPEN"]


def test_opens_after_consecutive_failures_and_fails_fast() -> None:
    breaker, _clock, transitions = make()
    fail(breaker, 4)
    assert breaker.state is BreakerState.CLOSED
    fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN  # type: ignore[comparison-overlap]
    assert transitions == [(BreakerState.CLOSED, BreakerState.OPEN)]
    assert not breaker.allow()


def test_a_success_resets_the_consecutive_count() -> None:
    breaker, _clock, _ = make()
    fail(breaker, 4)
    breaker.record_success()
    fail(breaker, 4)
    assert breaker.state is BreakerState.CLOSED


def test_opens_on_failure_ratio_once_the_window_holds_enough_results() -> None:
    config = BreakerConfig(consecutive_failures=100, failure_ratio=0.5, min_requests=10)
    breaker, _clock, _ = make(config)
    for _ in range(4):
        breaker.record_success()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED  # 4/8 but fewer than 10 results
    breaker.record_success()
    breaker.record_failure()  # 5/10
    assert breaker.state is BreakerState.OPEN  # type: ignore[comparison-overlap]


def test_old_failures_leave_the_ratio_window() -> None:
    config = BreakerConfig(consecutive_failures=100, min_requests=4, window=10.0)
    breaker, clock, _ = make(config)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    clock.now += 11
    breaker.record_success()
    breaker.record_success()
    breaker.record_success()
    breaker.record_failure()  # 1 of 4 in the window
    assert breaker.state is BreakerState.CLOSED


def test_half_open_after_the_open_duration_then_a_success_closes() -> None:
    breaker, clock, transitions = make()
    fail(breaker, 5)
    clock.now += 4.999
    assert not breaker.allow()
    clock.now += 0.001
    assert breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow(), "one probe at a time"
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED  # type: ignore[comparison-overlap]
    assert transitions == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]
    fail(breaker, 4)
    assert breaker.state is BreakerState.CLOSED, "closing forgot the old failures"


def test_open_duration_doubles_on_each_reopen_up_to_the_cap_and_resets_on_close() -> None:
    breaker, clock, _ = make(BreakerConfig(open_base=5.0, open_max=30.0))
    fail(breaker, 5)
    waits = []
    for _ in range(5):
        waits.append(breaker.open_duration())
        opened = clock.now
        while not breaker.allow():
            clock.now += 0.5
        waits[-1] = clock.now - opened
        breaker.record_failure()
        assert breaker.state is BreakerState.OPEN
    assert waits == [5.0, 10.0, 20.0, 30.0, 30.0]
    clock.now += 30
    assert breaker.allow()
    breaker.record_success()
    assert breaker.open_duration() == 5.0


def test_release_frees_a_probe_slot() -> None:
    breaker, clock, _ = make()
    fail(breaker, 5)
    clock.now += 5
    assert breaker.allow()
    assert not breaker.allow()
    breaker.release()
    assert breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN


def test_late_results_while_open_are_ignored() -> None:
    breaker, _clock, transitions = make()
    fail(breaker, 5)
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert len(transitions) == 1


def test_several_probes_when_configured() -> None:
    breaker, clock, _ = make(BreakerConfig(half_open_probes=3))
    fail(breaker, 5)
    clock.now += 5
    assert [breaker.allow() for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"consecutive_failures": 0},
        {"half_open_probes": 0},
        {"failure_ratio": 0.0},
        {"failure_ratio": 1.5},
        {"open_base": 0.0},
        {"open_base": 10.0, "open_max": 5.0},
    ],
)
def test_config_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        BreakerConfig(**kwargs)  # type: ignore[arg-type]


# Operations on the breaker: ("tick", dt) | ("allow", 0) | ("ok", 0) | ("fail", 0) | ("release", 0)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.floats(min_value=0, max_value=8)),
        st.tuples(st.sampled_from(["allow", "ok", "fail", "release"]), st.just(0.0)),
    ),
    max_size=200,
)


@settings(max_examples=300)
@given(ops=operations, probes=st.integers(min_value=1, max_value=3))
def test_breaker_properties(ops: list[tuple[str, float]], probes: int) -> None:
    config = BreakerConfig(
        consecutive_failures=3, min_requests=5, half_open_probes=probes, open_max=20.0
    )
    breaker, clock, transitions = make(config)
    opened_at = open_for = 0.0
    reopens = 0  # the model's count of re-opens since the last close
    in_flight = 0  # probes let through in HALF_OPEN and not yet resolved
    for op, dt in ops:
        before = breaker.state
        if op == "tick":
            clock.now += dt
        elif op == "allow":
            allowed = breaker.allow()
            if before is BreakerState.OPEN:
                # Never through while OPEN before the open duration has elapsed.
                assert allowed == (clock.now >= opened_at + open_for)
            if allowed and breaker.state is BreakerState.HALF_OPEN:
                in_flight += 1
                assert in_flight <= probes, "half-open lets at most the probe count through"
        elif op == "ok":
            breaker.record_success()
        elif op == "fail":
            breaker.record_failure()
            if breaker.state is BreakerState.OPEN and before is not BreakerState.OPEN:
                if before is BreakerState.HALF_OPEN:
                    reopens += 1
                opened_at = clock.now
                open_for = min(config.open_max, config.open_base * 2**reopens)
        else:
            breaker.release()
            in_flight = max(0, in_flight - 1)
        if breaker.state is not BreakerState.HALF_OPEN:
            in_flight = 0
        if breaker.state is BreakerState.CLOSED:
            reopens = 0
    allowed_moves = {
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    }
    assert set(transitions) <= allowed_moves
    for (_, first_new), (second_old, _) in itertools.pairwise(transitions):
        assert first_new is second_old
