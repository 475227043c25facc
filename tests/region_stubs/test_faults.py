"""Fault decisions are pure: checked over seeded generators, without a server."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from region_stubs.faults import FaultPlan, Faults, FaultsInvalid, Outcome, decide

N = 20_000


def outcomes(faults: Faults, seed: int = 7) -> Counter[Outcome]:
    rng = random.Random(seed)
    return Counter(decide(faults, rng).outcome for _ in range(N))


def test_healthy_settings_never_fault_and_draw_nothing() -> None:
    rng = random.Random(3)
    before = rng.getstate()
    plans = {decide(Faults(), rng) for _ in range(1000)}
    assert len(plans) == 1
    (plan,) = plans
    assert not plan.injects_fault
    assert plan.latency_seconds == 0
    assert plan.outcome is Outcome.PROCEED
    assert rng.getstate() == before
    assert Faults().healthy


def test_fractions_are_honoured_over_many_draws() -> None:
    faults = Faults(
        unavailable_fraction=0.3, resource_exhausted_fraction=0.2, commit_then_drop_fraction=0.1
    )
    seen = outcomes(faults)
    # 4 standard deviations of a binomial at N = 20000 is under 0.013.
    assert seen[Outcome.FAIL_BEFORE] / N == pytest.approx(0.3, abs=0.015)
    assert seen[Outcome.RESOURCE_EXHAUSTED] / N == pytest.approx(0.2, abs=0.015)
    assert seen[Outcome.COMMIT_THEN_DROP] / N == pytest.approx(0.1, abs=0.015)
    assert seen[Outcome.PROCEED] / N == pytest.approx(0.4, abs=0.015)


def test_fractions_of_one_and_zero_are_exact() -> None:
    assert outcomes(Faults(unavailable_fraction=1.0)) == {Outcome.FAIL_BEFORE: N}
    assert outcomes(Faults(commit_then_drop_fraction=1.0)) == {Outcome.COMMIT_THEN_DROP: N}
    assert outcomes(Faults(latency_ms=5)) == {Outcome.PROCEED: N}


def test_the_same_seed_replays_the_same_plans() -> None:
    faults = Faults(unavailable_fraction=0.5, latency_jitter_ms=40)

    def run(seed: int) -> list[FaultPlan]:
        rng = random.Random(seed)
        return [decide(faults, rng) for _ in range(200)]

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_latency_is_fixed_plus_bounded_jitter() -> None:
    rng = random.Random(5)
    latencies = [
        decide(Faults(latency_ms=100, latency_jitter_ms=50), rng).latency_seconds
        for _ in range(2000)
    ]
    assert min(latencies) >= 0.100
    assert max(latencies) <= 0.150
    assert max(latencies) - min(latencies) > 0.045  # the jitter really varies


def test_down_wins_over_everything() -> None:
    plan = decide(
        Faults(down=True, hang=True, latency_ms=500, unavailable_fraction=1.0), random.Random(1)
    )
    assert plan.down
    assert plan.injects_fault
    assert plan.latency_seconds == 0
    assert not plan.hang


def test_hang_keeps_latency_and_skips_fractions() -> None:
    plan = decide(Faults(hang=True, latency_ms=20, unavailable_fraction=1.0), random.Random(1))
    assert plan.hang
    assert plan.latency_seconds == pytest.approx(0.02)
    assert plan.outcome is Outcome.PROCEED


def test_pushback_rides_only_on_fail_before() -> None:
    faults = Faults(unavailable_fraction=0.5, commit_then_drop_fraction=0.5, pushback_ms=250)
    rng = random.Random(2)
    plans = [decide(faults, rng) for _ in range(500)]
    assert {p.pushback_ms for p in plans if p.outcome is Outcome.FAIL_BEFORE} == {250}
    assert {p.pushback_ms for p in plans if p.outcome is Outcome.COMMIT_THEN_DROP} == {None}
    no_pushback = decide(Faults(unavailable_fraction=1.0), rng)
    assert no_pushback.pushback_ms is None


def test_negative_pushback_means_do_not_retry_and_is_allowed() -> None:
    plan = decide(Faults(unavailable_fraction=1.0, pushback_ms=-1), random.Random(0))
    assert plan.pushback_ms == -1


@pytest.mark.parametrize(
    ("settings", "field", "reason"),
    [
        ({"unavailable_fraction": 1.5}, "unavailable_fraction", "FRACTION_OUT_OF_RANGE"),
        ({"commit_then_drop_fraction": -0.1}, "commit_then_drop_fraction", "FRACTION_OUT_OF_RANGE"),
        (
            {"resource_exhausted_fraction": math.nan},
            "resource_exhausted_fraction",
            "FRACTION_OUT_OF_RANGE",
        ),
        ({"latency_ms": -1}, "latency_ms", "NEGATIVE_DURATION"),
        ({"latency_jitter_ms": -5}, "latency_jitter_ms", "NEGATIVE_DURATION"),
        (
            {"unavailable_fraction": 0.6, "commit_then_drop_fraction": 0.6},
            "commit_then_drop_fraction",
            "FRACTIONS_EXCEED_ONE",
        ),
    ],
)
def test_invalid_settings_are_refused(settings: dict[str, float], field: str, reason: str) -> None:
    with pytest.raises(FaultsInvalid) as caught:
        Faults(**settings)  # type: ignore[arg-type]
    assert (field, reason) in {(v.field, v.reason) for v in caught.value.violations}


def test_fractions_summing_to_one_within_rounding_are_accepted() -> None:
    faults = Faults(
        unavailable_fraction=0.1, resource_exhausted_fraction=0.2, commit_then_drop_fraction=0.7
    )
    assert not faults.healthy


def test_proto_round_trip_keeps_every_field() -> None:
    faults = Faults(
        unavailable_fraction=0.25,
        commit_then_drop_fraction=0.125,
        resource_exhausted_fraction=0.5,
        latency_ms=10,
        latency_jitter_ms=20,
        hang=True,
        down=True,
        pushback_ms=300,
    )
    assert Faults.from_proto(faults.to_proto()) == faults
