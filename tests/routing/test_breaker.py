"""The per-province circuit breaker: open on failures, fail fast, probe, ramp up, close."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.app.config import ConfigError, load_config
from gateway.routing.breaker import BreakerConfig, BreakerState, CircuitBreaker

OLD_RULE = BreakerConfig(probe_failures=1, ramp_start=1.0, close_after=1)
"""The breaker before the ramp: one probe at a time, whose result decides."""


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


def succeed(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.allow()
        breaker.record_success()


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


def test_half_open_after_the_open_duration_probes_then_ramps_to_closed() -> None:
    breaker, clock, transitions = make()
    fail(breaker, 5)
    clock.now += 4.999
    assert not breaker.allow()
    clock.now += 0.001
    assert breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.share == 0.0
    assert not breaker.allow(), "one probe at a time"
    breaker.record_success()
    assert breaker.state is BreakerState.HALF_OPEN, "one success is not sustained success"
    assert breaker.share == pytest.approx(0.1)
    # The share reaches 1 on the tenth success; twenty in a row close the breaker.
    succeed(breaker, 9)
    assert breaker.share == 1.0
    succeed(breaker, 9)
    assert breaker.state is BreakerState.HALF_OPEN
    succeed(breaker, 1)
    assert breaker.state is BreakerState.CLOSED  # type: ignore[comparison-overlap]
    assert transitions == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]
    fail(breaker, 4)
    assert breaker.state is BreakerState.CLOSED, "closing forgot the old failures"


def test_the_old_rule_is_a_configuration() -> None:
    """One probe decides, as before the ramp: its success closes, its failure re-opens."""
    breaker, clock, _ = make(OLD_RULE)
    fail(breaker, 5)
    clock.now += 5
    fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN
    clock.now += 10
    succeed(breaker, 1)
    assert breaker.state is BreakerState.CLOSED  # type: ignore[comparison-overlap]


def reopen_from_half_open(breaker: CircuitBreaker) -> int:
    """Fails half-open's probes until it re-opens; returns how many were let through."""
    probes = 0
    while breaker.allow():
        probes += 1
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    return probes


def test_half_open_reopens_on_the_failed_share_not_on_one_failure() -> None:
    breaker, clock, _ = make()
    fail(breaker, 5)
    clock.now += 5
    fail(breaker, 1)
    assert breaker.state is BreakerState.HALF_OPEN, "one failed probe is no verdict"
    assert reopen_from_half_open(breaker) == 4
    clock.now += 9.999
    assert not breaker.allow(), "open twice as long as the first time"
    clock.now += 0.001
    # Once it has answered, a streak of failures is not enough: the ratio needs 20 results.
    succeed(breaker, 1)
    fail(breaker, 15)
    assert breaker.state is BreakerState.HALF_OPEN
    succeed(breaker, 3)
    fail(breaker, 7)  # 22 of 26 failed: under 85%
    assert breaker.state is BreakerState.HALF_OPEN
    assert reopen_from_half_open(breaker) == 1, "23 of 27 failed: 85% and more"


def test_open_duration_doubles_on_each_reopen_up_to_the_cap_and_resets_on_close() -> None:
    breaker, clock, _ = make(BreakerConfig(open_base=5.0, open_max=30.0))
    fail(breaker, 5)
    waits = []
    for _ in range(5):
        opened = clock.now
        while not breaker.allow():
            clock.now += 0.5
        waits.append(clock.now - opened)
        breaker.release()
        assert reopen_from_half_open(breaker) == 5
    assert waits == [5.0, 10.0, 20.0, 30.0, 30.0]
    clock.now += 30
    succeed(breaker, 20)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.open_duration() == 5.0


def test_a_success_in_half_open_restarts_the_doubling() -> None:
    breaker, clock, _ = make()
    fail(breaker, 5)
    for _ in range(3):
        clock.now += 60
        reopen_from_half_open(breaker)
    assert breaker.open_duration() == 40.0
    clock.now += 60
    succeed(breaker, 1)  # the province answers: it is not simply down
    assert breaker.open_duration() == 5.0
    assert reopen_from_half_open(breaker) == 19, "19 of min_requests (20) failed"
    assert breaker.open_duration() == 10.0


def test_the_share_grows_on_success_and_shrinks_on_failure_within_its_bounds() -> None:
    breaker, clock, _ = make()
    fail(breaker, 5)
    clock.now += 5
    shares = []
    for ok in (True, True, True, False, False, True):
        assert breaker.allow()
        if ok:
            breaker.record_success()
        else:
            breaker.record_failure()
        shares.append(breaker.share)
    assert shares == pytest.approx([0.1, 0.2, 0.3, 0.27, 0.243, 0.343])
    for _ in range(30):
        assert breaker.allow()
        breaker.record_failure()
        if breaker.state is not BreakerState.HALF_OPEN:
            break
        assert breaker.share >= 0.1, "never below ramp_start"
    assert breaker.state is BreakerState.OPEN


def test_the_ramp_lets_through_its_share_of_the_calls_asked_for() -> None:
    breaker, clock, _ = make()
    fail(breaker, 5)
    clock.now += 5
    succeed(breaker, 3)  # share 0.3
    assert breaker.allow()  # one call out: from now on, only the share
    let_through = sum(breaker.allow() for _ in range(100))
    assert let_through == 30


def test_the_ramp_never_refuses_a_quiet_province() -> None:
    breaker, clock, _ = make()
    fail(breaker, 5)
    clock.now += 5
    succeed(breaker, 1)  # share 0.1
    for _ in range(5):
        assert not breaker.blocking()
        assert breaker.allow(), "nothing is out: the one call goes through"
        breaker.release()
    assert breaker.share == pytest.approx(0.1), "a call without a verdict moves nothing"


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


# -- long runs: a simulated province, a simulated clock --------------------------------------

TICK = 0.1
"""Simulated seconds between two rounds of calls."""


@dataclass
class Run:
    """What a simulated province saw, per simulated minute."""

    asked: list[int] = field(default_factory=list)
    let_through: list[int] = field(default_factory=list)
    succeeded: list[int] = field(default_factory=list)
    open_ticks: int = 0
    ticks: int = 0
    transitions: list[tuple[float, BreakerState, BreakerState]] = field(default_factory=list)

    @property
    def share(self) -> float:
        return sum(self.let_through) / sum(self.asked)

    @property
    def open_time(self) -> float:
        return self.open_ticks / self.ticks


def simulate(
    failing: Callable[[float], float],
    *,
    seconds: float,
    burst: int,
    seed: int = 1,
    config: BreakerConfig | None = None,
) -> Run:
    """Every tick `burst` calls are asked for at once; those let through end within the tick,
    failing with probability `failing(elapsed seconds)`."""
    clock = FakeClock()
    start = clock.now
    run = Run()
    breaker = CircuitBreaker(
        config,
        clock=clock,
        on_transition=lambda old, new: run.transitions.append((clock() - start, old, new)),
    )
    rng = random.Random(seed)
    for tick in range(round(seconds / TICK)):
        minute = int(tick * TICK // 60)
        if minute == len(run.asked):
            run.asked.append(0)
            run.let_through.append(0)
            run.succeeded.append(0)
        out = sum(breaker.allow() for _ in range(burst))
        run.asked[minute] += burst
        run.let_through[minute] += out
        p = failing(clock.now - start)
        for _ in range(out):
            if rng.random() < p:
                breaker.record_failure()
            else:
                breaker.record_success()
                run.succeeded[minute] += 1
        run.ticks += 1
        run.open_ticks += breaker.state is BreakerState.OPEN
        clock.now += TICK
    return run


@pytest.mark.parametrize("burst", [1, 8], ids=["one-at-a-time", "bursts-of-8"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_province_failing_60_percent_keeps_draining(seed: int, burst: int) -> None:
    run = simulate(lambda _: 0.6, seconds=20 * 60, burst=burst, seed=seed)
    assert run.share >= 0.5, "most calls go through: the share settles near 2/3"
    assert min(t / a for t, a in zip(run.let_through, run.asked, strict=True)) >= 0.2
    assert min(run.succeeded) >= 50, "every simulated minute delivers"
    assert run.open_time <= 0.05, "the breaker does not stay open"
    assert all(new is not BreakerState.CLOSED for _, _, new in run.transitions)


def test_the_one_probe_rule_starved_a_province_failing_60_percent() -> None:
    """The issue, reproduced: each failed probe re-opened the breaker and doubled its wait."""
    run = simulate(lambda _: 0.6, seconds=20 * 60, burst=8, config=OLD_RULE)
    assert run.share < 0.05
    assert run.open_time > 0.9
    assert 0 in run.succeeded, "whole minutes without a delivery"


def probe_periods(config: BreakerConfig, seconds: float) -> int:
    """Half-open periods that fit in `seconds` after the breaker first opens, at the most."""
    periods, elapsed, reopens = 0, 0.0, 0
    while True:
        elapsed += min(config.open_max, config.open_base * 2**reopens)
        if elapsed > seconds:
            return periods
        periods += 1
        reopens += 1


@pytest.mark.parametrize("probes", [1, 3])
@pytest.mark.parametrize("burst", [1, 8])
def test_a_province_down_gets_only_probes(burst: int, probes: int) -> None:
    config = BreakerConfig(half_open_probes=probes)
    minutes = 10
    run = simulate(lambda _: 1.0, seconds=minutes * 60, burst=burst, config=config)
    periods = probe_periods(config, minutes * 60)
    per_period = config.probe_failures + probes - 1
    assert sum(run.succeeded) == 0
    tripping = max(config.consecutive_failures, burst)  # all out together when it trips
    assert sum(run.let_through) <= tripping + per_period * periods
    half_opened = [t for t, _, new in run.transitions if new is BreakerState.HALF_OPEN]
    assert len(half_opened) == periods, "it keeps being probed, on the doubling schedule"
    waits = [later - earlier for earlier, later in itertools.pairwise(half_opened)]
    assert waits[:4] == pytest.approx([10, 20, 40, 60], abs=1.0)
    assert all(wait <= config.open_max + 1.0 for wait in waits)
    # After the first open period, about once a minute: nothing like the callers' demand.
    assert sum(run.let_through[1:]) <= per_period * (minutes + 1)


def test_recovers_to_closed_after_sustained_success() -> None:
    outage = 180.0
    run = simulate(lambda t: 1.0 if t < outage else 0.0, seconds=300, burst=8)
    (closed_at, _, _), *_ = [
        (t, old, new) for t, old, new in run.transitions if new is BreakerState.CLOSED
    ]
    # The last open period began within the outage; after it, about 20 calls close the ramp.
    assert outage < closed_at <= outage + BreakerConfig().open_max + 5.0
    assert run.transitions[-1][2] is BreakerState.CLOSED
    assert run.let_through[-1] == run.asked[-1], "closed: every call goes through"


def test_a_province_dying_while_ramping_reopens_within_the_window() -> None:
    config = BreakerConfig()
    switch = 120.0
    run = simulate(lambda t: 0.6 if t < switch else 1.0, seconds=130, burst=8)
    reopened = [t for t, old, new in run.transitions if t >= switch and new is BreakerState.OPEN]
    assert reopened, "the ratio of half-open's latest results re-opened it"
    # At most the window's failed share of failures, and those went at the ramp's share.
    limit = math.ceil(config.reopen_ratio * config.half_open_window)
    assert reopened[0] - switch <= limit * TICK


@pytest.mark.parametrize(
    "kwargs",
    [
        {"consecutive_failures": 0},
        {"half_open_probes": 0},
        {"failure_ratio": 0.0},
        {"failure_ratio": 1.5},
        {"open_base": 0.0},
        {"open_base": 10.0, "open_max": 5.0},
        {"reopen_ratio": 0.0},
        {"reopen_ratio": 1.5},
        {"probe_failures": 0},
        {"min_requests": 11, "half_open_window": 10},
        {"ramp_start": 0.0},
        {"ramp_step": 1.5},
        {"close_after": 0},
    ],
)
def test_config_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        BreakerConfig(**kwargs)  # type: ignore[arg-type]


# Operations on the breaker: ("tick", dt) | ("allow", 0) | ("ok", 0) | ("fail", 0) | ("release", 0),
# and the calls "call_ok" and "call_fail": an allow, then that result (recorded even if refused).
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("tick"),
            st.sampled_from([0.5, 2.5, 5.0, 8.0]) | st.floats(min_value=0, max_value=8),
        ),
        st.tuples(
            st.sampled_from(["allow", "ok", "fail", "release", "call_ok", "call_fail"]),
            st.just(0.0),
        ),
        st.tuples(st.sampled_from(["call_ok", "call_fail"]), st.just(0.0)),
    ),
    min_size=40,
    max_size=200,
).map(
    lambda ops: [
        step
        for op in ops
        for step in (
            [("allow", 0.0), (op[0].removeprefix("call_"), 0.0)]
            if op[0].startswith("call_")
            else [op]
        )
    ]
)


@dataclass
class Model:
    """What the invariants say of a breaker, kept beside it from the calls made to it."""

    config: BreakerConfig
    opened_at: float = 0.0
    open_for: float = 0.0
    reopens: int = 0
    """Re-opens since half-open last saw a success or the breaker closed."""
    in_flight: int = 0
    """Calls let through in HALF_OPEN and not yet resolved."""
    results: int = 0
    """Half-open's results so far (while ramping: since it began)."""
    streak: int = 0
    """Half-open's successes in a row."""
    ramping: bool = False
    """Half-open has seen a success."""

    def allowed(self, breaker: CircuitBreaker, now: float, before: BreakerState) -> None:
        refusal_foretold = breaker.blocking()
        allowed = breaker.allow()
        assert allowed is not refusal_foretold, "blocking() foretells allow()"
        if before is BreakerState.OPEN:
            # Never through while OPEN before the open duration has elapsed.
            assert allowed == (now >= self.opened_at + self.open_for)
            if breaker.state is BreakerState.HALF_OPEN:
                self.in_flight = self.results = self.streak = 0
                self.ramping = False
        if allowed and breaker.state is BreakerState.HALF_OPEN:
            self.in_flight += 1
            if not self.ramping:
                probes = self.config.half_open_probes
                assert self.in_flight <= probes, "probing lets at most the probe count through"

    def resolved(self, breaker: CircuitBreaker, now: float, op: str) -> None:
        before = breaker.state
        counted = before is BreakerState.HALF_OPEN and self.in_flight > 0
        if op == "ok":
            breaker.record_success()
        elif op == "fail":
            breaker.record_failure()
        else:
            breaker.release()
        if counted:
            self.in_flight -= 1
        if counted and op != "release":
            if op == "ok" and not self.ramping:  # the ramp judges only what it lets through
                self.ramping, self.reopens, self.results, self.streak = True, 0, 0, 0
                assert breaker.share == self.config.ramp_start
            self.results += 1
            self.streak = self.streak + 1 if op == "ok" else 0
        if breaker.state is BreakerState.OPEN and before is not BreakerState.OPEN:
            if before is BreakerState.HALF_OPEN:
                needed = self.config.min_requests if self.ramping else self.config.probe_failures
                assert self.results >= needed, "one failure is no verdict"
                self.reopens += 1
            self.opened_at = now
            self.open_for = min(self.config.open_max, self.config.open_base * 2**self.reopens)
        if before is BreakerState.HALF_OPEN and breaker.state is BreakerState.CLOSED:
            assert op == "ok"
            assert self.streak >= self.config.close_after, "closed only on sustained success"

    def check(self, breaker: CircuitBreaker) -> None:
        if breaker.state is BreakerState.CLOSED:
            self.reopens = 0
            assert breaker.share == 1.0
        elif breaker.state is BreakerState.OPEN:
            assert breaker.share == 0.0
        elif self.ramping:
            assert self.config.ramp_start <= breaker.share <= 1.0
        else:
            assert breaker.share == 0.0


@settings(max_examples=200)
@given(ops=operations, probes=st.integers(min_value=1, max_value=3))
def test_breaker_properties(ops: list[tuple[str, float]], probes: int) -> None:
    config = BreakerConfig(
        consecutive_failures=3,
        min_requests=5,
        half_open_probes=probes,
        open_max=20.0,
        probe_failures=3,
        half_open_window=6,
        ramp_start=0.25,
        ramp_step=0.25,
        close_after=4,
    )
    breaker, clock, transitions = make(config)
    model = Model(config)
    for op, dt in ops:
        if op == "tick":
            clock.now += dt
        elif op == "allow":
            model.allowed(breaker, clock.now, breaker.state)
        else:
            model.resolved(breaker, clock.now, op)
        model.check(breaker)
    allowed_moves = {
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    }
    assert set(transitions) <= allowed_moves
    for (_, first_new), (second_old, _) in itertools.pairwise(transitions):
        assert first_new is second_old


# -- settings, from TONGBAN_BREAKER_* keys --------------------------------------------------


def test_settings_default_to_the_config_defaults() -> None:
    assert load_config({"TONGBAN_INSECURE": "1"}).delivery.breaker == BreakerConfig()


def test_settings_come_from_tongban_breaker_keys() -> None:
    config = load_config(
        {
            "TONGBAN_INSECURE": "1",
            "TONGBAN_BREAKER_CONSECUTIVE_FAILURES": "7",
            "TONGBAN_BREAKER_FAILURE_RATIO": "0.6",
            "TONGBAN_BREAKER_OPEN_BASE": "2",
            "TONGBAN_BREAKER_OPEN_MAX": "30",
            "TONGBAN_BREAKER_REOPEN_RATIO": "0.9",
            "TONGBAN_BREAKER_PROBE_FAILURES": "4",
            "TONGBAN_BREAKER_HALF_OPEN_WINDOW": "40",
            "TONGBAN_BREAKER_RAMP_START": "0.25",
            "TONGBAN_BREAKER_RAMP_STEP": "0.05",
            "TONGBAN_BREAKER_CLOSE_AFTER": "10",
        }
    )
    assert config.delivery.breaker == BreakerConfig(
        consecutive_failures=7,
        failure_ratio=0.6,
        open_base=2.0,
        open_max=30.0,
        reopen_ratio=0.9,
        probe_failures=4,
        half_open_window=40,
        ramp_start=0.25,
        ramp_step=0.05,
        close_after=10,
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("TONGBAN_BREAKER_REOPEN_RATIO", "1.5"),
        ("TONGBAN_BREAKER_PROBE_FAILURES", "2.5"),
        ("TONGBAN_BREAKER_PROBE_FAILURES", "0"),
        ("TONGBAN_BREAKER_HALF_OPEN_WINDOW", "2"),
        ("TONGBAN_BREAKER_RAMP_START", "0"),
        ("TONGBAN_BREAKER_RAMP_STEP", "x"),
        ("TONGBAN_BREAKER_CLOSE_AFTER", "0"),
    ],
)
def test_bad_settings_are_refused_at_start(key: str, value: str) -> None:
    with pytest.raises(ConfigError):
        load_config({"TONGBAN_INSECURE": "1", key: value})
