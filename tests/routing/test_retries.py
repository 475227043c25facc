"""The retry loop of one southbound call, driven by a fake clock and scripted attempts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import tenacity
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import RegionCallError
from gateway.events import (
    AttemptFinished,
    AttemptStarted,
    Event,
    PushbackHonoured,
    RetryBudgetExhausted,
    RetryGranted,
)
from gateway.routing.breaker import BreakerConfig, BreakerState, CircuitBreaker
from gateway.routing.budget import BudgetConfig, RetryBudget
from gateway.routing.policy import REASONS, RetryPolicy
from gateway.routing.retries import OUTCOMES, DeliveryFailed, call_with_retries

REGION = "440000"
POLICY = RetryPolicy()


class World:
    """A fake clock and a sleep that only moves it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Step:
    """One scripted attempt: it takes `duration` (cut to its timeout), then fails or returns."""

    error: RegionCallError | None = None
    duration: float = 0.01
    times_out: bool = False


def fail(
    code: grpc.StatusCode,
    *,
    pushback_ms: int | None = None,
    retry_delay: float | None = None,
    reason: str = "",
) -> Step:
    error = RegionCallError(
        REGION, code, "scripted", reason=reason, pushback_ms=pushback_ms, retry_delay=retry_delay
    )
    return Step(error=error)


def timeout() -> Step:
    return Step(
        error=RegionCallError(REGION, grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"),
        times_out=True,
    )


OK = Step()


class Script:
    """An attempt function that plays `steps` and checks the loop's promises on every call."""

    def __init__(self, world: World, steps: Sequence[Step], deadline: float) -> None:
        self.world = world
        self.steps = list(steps)
        self.deadline = deadline
        self.calls: list[tuple[float, float, int]] = []

    async def __call__(self, timeout_seconds: float, attempt_number: int) -> str:
        now = self.world.now
        self.calls.append((now, timeout_seconds, attempt_number))
        assert now + POLICY.min_attempt_time <= self.deadline + 1e-9, "started past the deadline"
        assert timeout_seconds <= self.deadline - now + 1e-9, "timeout outlives the call"
        step = self.steps.pop(0)
        self.world.now += timeout_seconds if step.times_out else min(step.duration, timeout_seconds)
        if step.error is not None:
            raise step.error
        return f"receipt-{attempt_number}"

    @property
    def attempts(self) -> int:
        return len(self.calls)


class Recorder:
    """The events one call emits, as (kind, detail) pairs."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def emit(self, event: Event) -> None:
        assert getattr(event, "region_code", None) == REGION
        if isinstance(event, AttemptStarted):
            self.events.append(("attempt", event.number))
        elif isinstance(event, AttemptFinished):
            self.events.append(("finished", (event.number, event.code)))
        elif isinstance(event, RetryGranted):
            assert event.reason in REASONS
            self.events.append(("retry", event.reason))
        elif isinstance(event, RetryBudgetExhausted):
            self.events.append(("budget_exhausted", None))
        elif isinstance(event, PushbackHonoured):
            self.events.append(("pushback", None))
        else:
            raise AssertionError(f"unexpected event {event!r}")


@dataclass
class Harness:
    world: World
    budget: RetryBudget
    breaker: CircuitBreaker
    observer: Recorder

    async def run(
        self,
        steps: Sequence[Step],
        *,
        budget_seconds: float = 5.0,
        policy: RetryPolicy = POLICY,
        rng_value: float = 0.5,
    ) -> tuple[Script, str | DeliveryFailed]:
        deadline = self.world.now + budget_seconds
        script = Script(self.world, steps, deadline)
        try:
            result: str | DeliveryFailed = await call_with_retries(
                script,
                region_code=REGION,
                policy=policy,
                budget=self.budget,
                breaker=self.breaker,
                deadline=deadline,
                clock=self.world.clock,
                rng=lambda: rng_value,
                sleep=self.world.sleep,
                events=self.observer,
            )
        except DeliveryFailed as failed:
            result = failed
        if isinstance(result, DeliveryFailed):
            assert result.outcome in OUTCOMES
            assert result.attempts == script.attempts
        return script, result


@pytest.fixture
def harness() -> Harness:
    world = World()
    return Harness(
        world=world,
        budget=RetryBudget(clock=world.clock),
        breaker=CircuitBreaker(clock=world.clock),
        observer=Recorder(),
    )


@pytest.fixture
def no_tenacity(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tenacity.AsyncRetrying was built")

    monkeypatch.setattr(tenacity, "AsyncRetrying", refuse)


@pytest.fixture
def tenacity_builds(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    built: list[object] = []
    real = tenacity.AsyncRetrying

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(tenacity, "AsyncRetrying", Counting)
    return built


@pytest.mark.usefixtures("no_tenacity")
async def test_happy_path_is_one_plain_attempt(harness: Harness) -> None:
    script, result = await harness.run([OK])
    assert result == "receipt-1"
    assert script.calls == [(100.0, POLICY.per_attempt_timeout, 1)]
    assert harness.world.sleeps == []
    assert harness.budget.requests == 1
    assert harness.observer.events == [("attempt", 1), ("finished", (1, "OK"))]


async def test_unavailable_twice_then_ok_makes_three_attempts(
    harness: Harness, tenacity_builds: list[object]
) -> None:
    unavailable = fail(grpc.StatusCode.UNAVAILABLE)
    script, result = await harness.run([unavailable, unavailable, OK], rng_value=0.5)
    assert result == "receipt-3"
    assert [number for _, _, number in script.calls] == [1, 2, 3]
    # Full jitter with rng=0.5: half of 0.05, then half of 0.1.
    assert harness.world.sleeps == pytest.approx([0.025, 0.05])
    assert harness.budget.requests == 1
    assert harness.budget.retries == 2
    assert harness.observer.events == [
        ("attempt", 1),
        ("finished", (1, "UNAVAILABLE")),
        ("retry", "unavailable"),
        ("attempt", 2),
        ("finished", (2, "UNAVAILABLE")),
        ("retry", "unavailable"),
        ("attempt", 3),
        ("finished", (3, "OK")),
    ]
    assert len(tenacity_builds) == 1


async def test_each_call_builds_a_fresh_retrier(
    harness: Harness, tenacity_builds: list[object]
) -> None:
    for _ in range(2):
        _, result = await harness.run([fail(grpc.StatusCode.UNAVAILABLE), OK])
        assert result == "receipt-2"
    assert len(tenacity_builds) == 2
    assert tenacity_builds[0] is not tenacity_builds[1]


@pytest.mark.usefixtures("no_tenacity")
async def test_not_found_is_one_attempt_and_not_retryable(harness: Harness) -> None:
    refused = fail(grpc.StatusCode.NOT_FOUND, reason="LOCAL_CODE_NOT_FOUND")
    script, result = await harness.run([refused])
    assert isinstance(result, DeliveryFailed)
    assert (result.outcome, result.attempts, result.retryable) == ("not_retryable", 1, False)
    assert result.last_error is refused.error
    assert script.attempts == 1
    assert harness.breaker.state is BreakerState.CLOSED


@pytest.mark.usefixtures("no_tenacity")
@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.INTERNAL, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.CANCELLED],
    ids=lambda c: c.name,
)
async def test_other_final_failures_keep_the_application_queued(
    harness: Harness, code: grpc.StatusCode
) -> None:
    _, result = await harness.run([fail(code)])
    assert isinstance(result, DeliveryFailed)
    assert (result.outcome, result.attempts, result.retryable) == ("not_retryable", 1, True)


async def test_not_retryable_after_a_retry_reports_the_last_error(harness: Harness) -> None:
    refused = fail(grpc.StatusCode.INVALID_ARGUMENT)
    _, result = await harness.run([fail(grpc.StatusCode.UNAVAILABLE), refused])
    assert isinstance(result, DeliveryFailed)
    assert (result.outcome, result.attempts, result.retryable) == ("not_retryable", 2, False)
    assert result.last_error is refused.error


async def test_pushback_is_honoured_exactly(harness: Harness) -> None:
    _, result = await harness.run([fail(grpc.StatusCode.UNAVAILABLE, pushback_ms=300), OK])
    assert result == "receipt-2"
    assert harness.world.sleeps == [0.3]
    assert ("pushback", None) in harness.observer.events


async def test_retry_info_is_honoured_exactly(harness: Harness) -> None:
    _, result = await harness.run([fail(grpc.StatusCode.UNAVAILABLE, retry_delay=2.5), OK])
    assert result == "receipt-2"
    assert harness.world.sleeps == [2.5]


async def test_resource_exhausted_with_pushback_is_retried(harness: Harness) -> None:
    step = fail(grpc.StatusCode.RESOURCE_EXHAUSTED, pushback_ms=0)
    _, result = await harness.run([step, OK])
    assert result == "receipt-2"
    assert harness.world.sleeps == [0.0]
    assert ("retry", "pushback") in harness.observer.events


@pytest.mark.usefixtures("no_tenacity")
async def test_negative_pushback_stops(harness: Harness) -> None:
    _, result = await harness.run([fail(grpc.StatusCode.UNAVAILABLE, pushback_ms=-1)])
    assert isinstance(result, DeliveryFailed)
    assert (result.outcome, result.attempts, result.retryable) == ("not_retryable", 1, True)
    assert harness.world.sleeps == []
    assert ("pushback", None) in harness.observer.events


async def test_pushback_past_the_deadline_gives_up_without_sleeping(harness: Harness) -> None:
    step = fail(grpc.StatusCode.UNAVAILABLE, pushback_ms=10_000)
    _, result = await harness.run([step], budget_seconds=2.0)
    assert isinstance(result, DeliveryFailed)
    assert (result.outcome, result.attempts, result.retryable) == ("deadline", 1, True)
    assert harness.world.sleeps == []
    assert harness.budget.retries == 0, "no budget spent on a retry that was never made"


async def test_budget_exhausted_stops_and_counts(harness: Harness) -> None:
    harness.budget = RetryBudget(BudgetConfig(ratio=0.0, floor=1), clock=harness.world.clock)
    unavailable = fail(grpc.StatusCode.UNAVAILABLE)
    _, result = await harness.run([unavailable, unavailable, OK])
    assert isinstance(result, DeliveryFailed)
    assert (result.outcome, result.attempts, result.retryable) == ("budget_exhausted", 2, True)
    assert harness.budget.exhausted == 1
    assert harness.observer.events[-1] == ("budget_exhausted", None)


async def test_attempts_exhausted(harness: Harness) -> None:
    steps = [fail(grpc.StatusCode.UNAVAILABLE) for _ in range(POLICY.max_attempts)]
    script, result = await harness.run(steps)
    assert isinstance(result, DeliveryFailed)
    assert (result.outcome, result.attempts, result.retryable) == (
        "attempts_exhausted",
        POLICY.max_attempts,
        True,
    )
    assert result.last_error is steps[-1].error
    assert script.steps == []


async def test_attempt_timeouts_shrink_to_the_deadline(harness: Harness) -> None:
    script, result = await harness.run([timeout()] * 4, budget_seconds=2.3, rng_value=0.0)
    assert isinstance(result, DeliveryFailed)
    assert [t for _, t, _ in script.calls] == pytest.approx([1.0, 1.0, 0.3])
    assert result.outcome == "deadline"
    assert result.last_error is not None
    assert result.last_error.code is grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.usefixtures("no_tenacity")
async def test_no_attempt_when_the_deadline_has_passed(harness: Harness) -> None:
    _, result = await harness.run([OK], budget_seconds=0.01)
    assert isinstance(result, DeliveryFailed)
    assert (result.outcome, result.attempts, result.last_error) == ("deadline", 0, None)
    assert harness.budget.requests == 0


@pytest.mark.usefixtures("no_tenacity")
async def test_open_breaker_fails_fast_without_calling(harness: Harness) -> None:
    for _ in range(5):
        harness.breaker.record_failure()
    script, result = await harness.run([OK])
    assert isinstance(result, DeliveryFailed)
    assert (result.outcome, result.attempts, result.retryable) == ("breaker_open", 0, True)
    assert script.attempts == 0


async def test_breaker_opening_mid_call_stops_the_retries(harness: Harness) -> None:
    harness.breaker = CircuitBreaker(
        BreakerConfig(consecutive_failures=2), clock=harness.world.clock
    )
    unavailable = fail(grpc.StatusCode.UNAVAILABLE)
    _, result = await harness.run([unavailable, unavailable, OK])
    assert isinstance(result, DeliveryFailed)
    assert (result.outcome, result.attempts) == ("breaker_open", 2)
    assert result.last_error is unavailable.error


async def test_only_ill_health_counts_against_the_breaker(harness: Harness) -> None:
    harness.breaker = CircuitBreaker(
        BreakerConfig(consecutive_failures=2), clock=harness.world.clock
    )
    for _ in range(5):
        await harness.run([fail(grpc.StatusCode.INVALID_ARGUMENT)])
    assert harness.breaker.state is BreakerState.CLOSED
    _, result = await harness.run([timeout(), timeout(), OK], budget_seconds=5.0)
    assert isinstance(result, DeliveryFailed)
    assert (result.outcome, result.attempts) == ("breaker_open", 2)
    assert harness.breaker.state is BreakerState.OPEN  # type: ignore[comparison-overlap]


async def test_a_timeout_cut_short_by_the_callers_deadline_is_no_verdict(
    harness: Harness,
) -> None:
    harness.breaker = CircuitBreaker(
        BreakerConfig(consecutive_failures=1), clock=harness.world.clock
    )
    _, result = await harness.run([timeout()], budget_seconds=0.5)
    assert isinstance(result, DeliveryFailed)
    assert (result.outcome, result.attempts) == ("deadline", 1)
    assert harness.breaker.state is BreakerState.CLOSED


async def test_cancelled_attempt_propagates_and_frees_the_probe(harness: Harness) -> None:
    breaker = harness.breaker
    for _ in range(5):
        breaker.record_failure()
    harness.world.now += 5  # the open duration has elapsed: next allow() takes the probe

    async def cancelled(timeout_seconds: float, attempt_number: int) -> str:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await call_with_retries(
            cancelled,
            region_code=REGION,
            policy=POLICY,
            budget=harness.budget,
            breaker=breaker,
            deadline=harness.world.now + 5,
            clock=harness.world.clock,
            sleep=harness.world.sleep,
            events=harness.observer,
        )
    assert harness.observer.events == [("attempt", 1), ("finished", (1, "CANCELLED"))]
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow(), "the probe slot was released"


async def test_cancellation_during_backoff_propagates(harness: Harness) -> None:
    calls = 0
    sleeping = asyncio.Event()

    async def unavailable(timeout_seconds: float, attempt_number: int) -> str:
        nonlocal calls
        calls += 1
        raise RegionCallError(REGION, grpc.StatusCode.UNAVAILABLE, "down")

    async def sleep_forever(seconds: float) -> None:
        sleeping.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(
        call_with_retries(
            unavailable,
            region_code=REGION,
            policy=POLICY,
            budget=harness.budget,
            breaker=harness.breaker,
            deadline=harness.world.now + 5,
            clock=harness.world.clock,
            sleep=sleep_forever,
        )
    )
    await sleeping.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1


async def test_cancellation_during_a_retry_propagates_unretried(harness: Harness) -> None:
    calls = 0
    second_started = asyncio.Event()

    async def down_then_hang(timeout_seconds: float, attempt_number: int) -> str:
        nonlocal calls
        calls += 1
        if attempt_number == 1:
            raise RegionCallError(REGION, grpc.StatusCode.UNAVAILABLE, "down")
        second_started.set()
        await asyncio.Event().wait()
        return "unreachable"

    task = asyncio.create_task(
        call_with_retries(
            down_then_hang,
            region_code=REGION,
            policy=POLICY,
            budget=harness.budget,
            breaker=harness.breaker,
            deadline=harness.world.now + 5,
            clock=harness.world.clock,
            sleep=harness.world.sleep,
        )
    )
    await second_started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 2


async def test_unexpected_exceptions_propagate_as_is(harness: Harness) -> None:
    async def broken(timeout_seconds: float, attempt_number: int) -> str:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await call_with_retries(
            broken,
            region_code=REGION,
            policy=POLICY,
            budget=harness.budget,
            breaker=harness.breaker,
            deadline=harness.world.now + 5,
            clock=harness.world.clock,
            sleep=harness.world.sleep,
        )


async def test_real_clock_and_sleep_defaults() -> None:
    attempts: list[float] = []

    async def flaky(timeout_seconds: float, attempt_number: int) -> str:
        attempts.append(timeout_seconds)
        if attempt_number == 1:
            raise RegionCallError(REGION, grpc.StatusCode.UNAVAILABLE, "down", pushback_ms=1)
        return "ok"

    result = await call_with_retries(
        flaky,
        region_code=REGION,
        policy=POLICY,
        budget=RetryBudget(),
        breaker=CircuitBreaker(),
        deadline=time.monotonic() + 1.0,
    )
    assert result == "ok"
    assert len(attempts) == 2
    assert all(0 < t <= 1.0 for t in attempts)


# A random world: each attempt fails with one of these, succeeds, or times out.
step_strategy = st.one_of(
    st.just(OK),
    st.builds(timeout),
    st.builds(
        fail,
        st.sampled_from(
            [
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.INTERNAL,
            ]
        ),
        pushback_ms=st.none() | st.integers(min_value=-1, max_value=3000),
        retry_delay=st.none() | st.floats(min_value=0, max_value=3),
    ),
    st.builds(Step, duration=st.floats(min_value=0, max_value=2)),
)


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(step_strategy, min_size=8, max_size=8),
    budget_seconds=st.floats(min_value=0, max_value=6),
    max_attempts=st.integers(min_value=1, max_value=6),
    rng_value=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_never_starts_an_attempt_past_the_deadline(
    steps: list[Step], budget_seconds: float, max_attempts: int, rng_value: float
) -> None:
    policy = RetryPolicy(max_attempts=max_attempts)
    world = World()
    harness = Harness(
        world=world,
        budget=RetryBudget(clock=world.clock),
        breaker=CircuitBreaker(clock=world.clock),
        observer=Recorder(),
    )
    # Script asserts, on every attempt, the start and timeout against the deadline.
    script, result = asyncio.run(
        harness.run(steps, budget_seconds=budget_seconds, policy=policy, rng_value=rng_value)
    )
    assert script.attempts <= max_attempts
    for _, attempt_timeout, _ in script.calls:
        assert policy.min_attempt_time <= attempt_timeout <= policy.per_attempt_timeout
    assert [number for _, _, number in script.calls] == list(range(1, script.attempts + 1))
    # Every retry made was paid for; at most one more was paid for and then refused.
    assert script.attempts - 1 <= harness.budget.retries <= max(0, script.attempts)
    if isinstance(result, DeliveryFailed):
        last = result.last_error
        assert (last is None) == (script.attempts == 0)
        if not result.retryable:
            assert last is not None
            assert last.code is grpc.StatusCode.NOT_FOUND
    else:
        assert result == f"receipt-{script.attempts}"
