"""Fault injection: the settings a stub is told to misbehave with, and the pure decision per call.

Invariants:
- `Faults` is always valid once built: fractions in [0, 1] whose sum is at most 1, latencies
  non-negative. `Faults()` is a healthy stub and `decide` never faults on it.
- The three fractions share ONE uniform draw, split in a fixed order (unavailable, resource
  exhausted, commit-then-drop), so each is honoured exactly in expectation and a call suffers at
  most one of them. That is why their sum may not exceed 1.
- `decide` is pure apart from the random generator it is handed: the same settings and the same
  seeded generator give the same plans, so a fault run can be replayed.
- `pushback_ms` rides only on the `unavailable_fraction` failures (as admin.proto says). A
  negative value is allowed: in gRFC A6 it tells the client not to retry at all.
- The output-licence faults touch only the licences issued when a case completes, never a
  call: forged and mismatched are exclusive, as a licence is wrong in one way at a time.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterator
from dataclasses import dataclass, fields

from gateway.errors import FieldViolation
from region_stubs.admin.v1 import admin_pb2

_FRACTIONS = ("unavailable_fraction", "resource_exhausted_fraction", "commit_then_drop_fraction")
_DURATIONS = ("latency_ms", "latency_jitter_ms")


class FaultsInvalid(ValueError):
    """Fault settings that break an invariant; carries one violation per bad field."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))
        self.violations = violations


@dataclass(frozen=True, slots=True)
class Faults:
    """Fault-injection settings, mirroring `region_stubs.admin.v1.FaultSettings`."""

    unavailable_fraction: float = 0.0
    """Share of DeliverApplication calls answered UNAVAILABLE before doing anything."""
    commit_then_drop_fraction: float = 0.0
    """Share of DeliverApplication calls that record the case, then answer UNAVAILABLE."""
    resource_exhausted_fraction: float = 0.0
    """Share of DeliverApplication calls answered RESOURCE_EXHAUSTED."""
    latency_ms: int = 0
    """Fixed latency added to every DeliverApplication call."""
    latency_jitter_ms: int = 0
    """Extra latency, uniform in [0, latency_jitter_ms], added on top of `latency_ms`."""
    hang: bool = False
    """Every DeliverApplication call waits until its caller gives up."""
    down: bool = False
    """Every RegionService call is answered UNAVAILABLE."""
    pushback_ms: int = 0
    """`grpc-retry-pushback-ms` carried by the `unavailable_fraction` failures; 0 = none."""
    forge_output_licenses: bool = False
    """Licences issued when a case completes are signed by a key not in the JWKS."""
    mismatch_output_licenses: bool = False
    """Licences issued when a case completes are held by another holder than the applicant."""

    def __post_init__(self) -> None:
        violations = list(_violations(self))
        if violations:
            raise FaultsInvalid(violations)

    @property
    def healthy(self) -> bool:
        """True when no fault is switched on."""
        return self == Faults()

    @classmethod
    def from_proto(cls, message: admin_pb2.FaultSettings) -> Faults:
        """Builds validated settings from the admin message; raises `FaultsInvalid`."""
        return cls(**{f.name: getattr(message, f.name) for f in fields(cls)})

    def to_proto(self) -> admin_pb2.FaultSettings:
        """The admin message for these settings."""
        return admin_pb2.FaultSettings(**{f.name: getattr(self, f.name) for f in fields(self)})


def _violations(faults: Faults) -> Iterator[FieldViolation]:
    fractions = [getattr(faults, name) for name in _FRACTIONS]
    for name, value in zip(_FRACTIONS, fractions, strict=True):
        if not 0.0 <= value <= 1.0:  # also refuses NaN
            yield FieldViolation(name, "must be a fraction in [0, 1]", "FRACTION_OUT_OF_RANGE")
    if all(0.0 <= value <= 1.0 for value in fractions) and sum(fractions) > 1.0 + 1e-9:
        yield FieldViolation(
            "commit_then_drop_fraction",
            "the three fractions share one draw: their sum must be at most 1",
            "FRACTIONS_EXCEED_ONE",
        )
    for name in _DURATIONS:
        if getattr(faults, name) < 0:
            yield FieldViolation(name, "must not be negative", "NEGATIVE_DURATION")
    if faults.forge_output_licenses and faults.mismatch_output_licenses:
        yield FieldViolation(
            "mismatch_output_licenses",
            "not with forge_output_licenses: a licence is wrong in one way at a time",
            "EXCLUSIVE",
        )


class Outcome(enum.Enum):
    """What a DeliverApplication call does once its latency has passed."""

    PROCEED = "proceed"
    """Handle the call normally."""
    FAIL_BEFORE = "fail_before"
    """Answer UNAVAILABLE without touching anything."""
    RESOURCE_EXHAUSTED = "resource_exhausted"
    """Answer RESOURCE_EXHAUSTED without touching anything."""
    COMMIT_THEN_DROP = "commit_then_drop"
    """Record the case, then answer UNAVAILABLE as if the response were lost."""


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What one call must suffer, decided before it is handled."""

    down: bool = False
    """Answer UNAVAILABLE at once; nothing else applies."""
    latency_seconds: float = 0.0
    """Wait this long first."""
    hang: bool = False
    """Then wait until the caller gives up."""
    outcome: Outcome = Outcome.PROCEED
    """Then this."""
    pushback_ms: int | None = None
    """Trailer `grpc-retry-pushback-ms` to send with a FAIL_BEFORE; None = no trailer."""

    @property
    def injects_fault(self) -> bool:
        """True when the call is answered with an injected failure (not mere latency)."""
        return self.down or self.hang or self.outcome is not Outcome.PROCEED


def decide(faults: Faults, rng: random.Random) -> FaultPlan:
    """The plan for one DeliverApplication call. Draws from `rng` only for what is switched on."""
    if faults.down:
        return FaultPlan(down=True)
    latency = faults.latency_ms / 1000.0
    if faults.latency_jitter_ms:
        latency += rng.uniform(0.0, faults.latency_jitter_ms) / 1000.0
    if faults.hang:
        return FaultPlan(latency_seconds=latency, hang=True)
    outcome = Outcome.PROCEED
    shares = (
        (faults.unavailable_fraction, Outcome.FAIL_BEFORE),
        (faults.resource_exhausted_fraction, Outcome.RESOURCE_EXHAUSTED),
        (faults.commit_then_drop_fraction, Outcome.COMMIT_THEN_DROP),
    )
    if any(share for share, _ in shares):
        draw = rng.random()
        edge = 0.0
        for share, candidate in shares:
            edge += share
            if draw < edge:
                outcome = candidate
                break
    pushback = faults.pushback_ms if outcome is Outcome.FAIL_BEFORE and faults.pushback_ms else None
    return FaultPlan(latency_seconds=latency, outcome=outcome, pushback_ms=pushback)
