"""A per-province circuit breaker: stop calling a province that is down, probe it, ramp back.

Invariants, in plain words:

- CLOSED lets every call through. It opens after `consecutive_failures` failures in a row, or
  when, with at least `min_requests` results in the sliding window, the failed share reaches
  `failure_ratio`.
- OPEN lets nothing through until its open duration has elapsed: `open_base`, doubled on each
  re-open from HALF_OPEN, at most `open_max`. The doubling starts over when half-open sees a
  success or the breaker closes, so only a province that answers nothing at all waits ever
  longer (as Envoy's ejection multiplier, which decays while a host behaves).
- HALF_OPEN first probes: it lets at most `half_open_probes` calls through at a time until one
  of them succeeds. From that success on it ramps, as slow start does: it lets through a share
  of the calls asked for, and always one when none it let through is out (a quiet province is
  never refused). The share starts at `ramp_start`, gains `ramp_step` on each success and loses
  the fraction `ramp_step` of itself on each failure, within [`ramp_start`, 1]: additive
  increase, multiplicative decrease, so it hovers near the province's successes per failure
  (0.6 or so for a province failing 60%). It is applied without randomness: each call asked
  for adds the share to a credit, and a whole credit lets one through.
- HALF_OPEN re-opens on the failed share of what it let through, never on one failure. While
  probing, when `probe_failures` probes have failed (all it let through, none succeeding): a
  province failing every call thus receives at most `probe_failures + half_open_probes - 1`
  calls per open period, probes and nothing more. While ramping (its results start afresh
  with the first success), once its latest `half_open_window` results number `min_requests`
  or more and at least `reopen_ratio` of them failed: the province answers, so the evidence
  that it answers too little must be broad, not a streak.
- HALF_OPEN closes after `close_after` successes in a row with the share at 1: sustained
  success, not one lucky call. A degraded province (60% failing, say) stays HALF_OPEN and is
  drained at its share; it is neither closed, to trip again at once, nor kept waiting.
- Only failures that say the province is ill are recorded as failures (the caller decides:
  see `policy.RetryDecision.unhealthy`); any answer from the province is a success. A call let
  through that ends without a verdict (cancelled) must be `release`d, or HALF_OPEN would count
  it as out for ever.
- Transitions happen inside `allow` and `record_*` (OPEN becomes HALF_OPEN on the first
  `allow` after the open duration), and each one calls `on_transition(old, new)` once. A
  state's counts start afresh each time it is entered (the open duration's doubling aside).
- Results recorded while OPEN, or in HALF_OPEN with none of the calls it let through out,
  come from calls let through earlier and are ignored.
- The clock is injected; nothing here does I/O or draws random numbers.
"""

from __future__ import annotations

import collections
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.routing.budget import SlidingWindow

__all__ = ["BreakerConfig", "BreakerState", "CircuitBreaker"]

# The share counts as 1 from here: ten steps of 0.1 add up to 0.9999999999999999.
_FULL = 1.0 - 1e-9


class BreakerState(enum.IntEnum):
    """A breaker's state; the value is what a gauge reports."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """When the breaker of one province opens and how it recovers. Times are in seconds."""

    consecutive_failures: int = 5
    """Failures in a row that open the breaker."""
    failure_ratio: float = 0.5
    """Failed share of the results in the window that opens the breaker."""
    min_requests: int = 20
    """Results a window must hold before its failed share counts (CLOSED's or the ramp's)."""
    window: float = 10.0
    """Length of the sliding window for `failure_ratio`."""
    buckets: int = 10
    """Buckets the window is cut into."""
    open_base: float = 5.0
    """How long the breaker stays open the first time."""
    open_max: float = 60.0
    """Cap of the open duration, which doubles on each re-open until half-open sees a success."""
    half_open_probes: int = 1
    """Calls let through at a time while half-open has seen no success yet (probing)."""
    reopen_ratio: float = 0.85
    """Failed share of half-open's latest results that re-opens it (Envoy ejects at 85%)."""
    probe_failures: int = 5
    """Failed probes, none succeeding, that re-open: the probes a dead province gets."""
    half_open_window: int = 100
    """How many of half-open's latest results `reopen_ratio` is taken over."""
    ramp_start: float = 0.1
    """Share of calls let through after half-open's first success; the share's floor."""
    ramp_step: float = 0.1
    """Added to the share on each success; the fraction of it taken away on each failure."""
    close_after: int = 20
    """Successes in a row, the share at 1, that close the breaker from half-open."""

    def __post_init__(self) -> None:
        if min(self.consecutive_failures, self.half_open_probes, self.min_requests) < 1:
            raise ValueError("consecutive_failures, half_open_probes, min_requests must be >= 1")
        if self.close_after < 1:
            raise ValueError("close_after must be >= 1")
        if not 0 < self.failure_ratio <= 1 or not 0 < self.reopen_ratio <= 1:
            raise ValueError("failure_ratio and reopen_ratio must be in (0, 1]")
        if self.open_base <= 0 or self.open_max < self.open_base:
            raise ValueError("open_base must be positive and open_max at least open_base")
        if self.probe_failures < 1 or self.half_open_window < self.min_requests:
            raise ValueError("probe_failures must be >= 1, half_open_window >= min_requests")
        if not 0 < self.ramp_start <= 1 or not 0 < self.ramp_step <= 1:
            raise ValueError("ramp_start and ramp_step must be in (0, 1]")


Transition = Callable[[BreakerState, BreakerState], None]


class CircuitBreaker:
    """The breaker of one province. Not thread-safe: use it from one event loop."""

    __slots__ = (
        "_clock",
        "_config",
        "_consecutive",
        "_credit",
        "_failures",
        "_in_flight",
        "_on_transition",
        "_open_until",
        "_recent",
        "_reopens",
        "_share",
        "_state",
        "_streak",
        "_window",
    )

    def __init__(
        self,
        config: BreakerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_transition: Transition | None = None,
    ) -> None:
        self._config = config or BreakerConfig()
        self._clock = clock
        self._on_transition = on_transition
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        # CLOSED's results over time. a: results, b: failures.
        self._window = SlidingWindow(self._config.window, self._config.buckets, clock)
        self._open_until = 0.0
        self._reopens = 0
        # HALF_OPEN: calls let through and not yet resolved; the share let through (0 while
        # probing); the credit the share has built up; the latest results (True = failed),
        # how many of them failed, and the successes in a row at their end.
        self._in_flight = 0
        self._share = 0.0
        self._credit = 0.0
        self._recent: collections.deque[bool] = collections.deque(
            maxlen=self._config.half_open_window
        )
        self._failures = 0
        self._streak = 0

    @property
    def state(self) -> BreakerState:
        """The current state, as of the last call to this breaker."""
        return self._state

    @property
    def config(self) -> BreakerConfig:
        """The configuration this breaker applies."""
        return self._config

    @property
    def share(self) -> float:
        """Share of calls let through: 1 CLOSED, 0 OPEN or probing, the ramp's in HALF_OPEN."""
        if self._state is BreakerState.CLOSED:
            return 1.0
        if self._state is BreakerState.OPEN:
            return 0.0
        return self._share

    def blocking(self) -> bool:
        """Would `allow` refuse a call now? Asks without changing state or taking a slot."""
        state = self._state
        if state is BreakerState.CLOSED:
            return False
        if state is BreakerState.OPEN:
            return self._clock() < self._open_until
        if self._share == 0.0:  # probing
            return self._in_flight >= self._config.half_open_probes
        return self._in_flight > 0 and self._credit + self._share < 1.0

    def open_duration(self) -> float:
        """How long the breaker stays open if it opens now."""
        return min(self._config.open_max, self._config.open_base * 2.0 ** min(self._reopens, 64))

    def allow(self) -> bool:
        """May a call go to the province now? A True in HALF_OPEN counts the call as out."""
        state = self._state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            if self._clock() < self._open_until:
                return False
            self._half_open()
        if self._share == 0.0:  # probing
            admitted = self._in_flight < self._config.half_open_probes
        else:
            self._credit += self._share
            admitted = self._credit >= 1.0
            if admitted:
                self._credit -= 1.0
            else:
                admitted = self._in_flight == 0
        if admitted:
            self._in_flight += 1
        return admitted

    def record_success(self) -> None:
        """The province answered a call let through."""
        state = self._state
        if state is BreakerState.CLOSED:
            self._consecutive = 0
            self._window.advance()
            self._window.add_a()
        elif state is BreakerState.HALF_OPEN and self._in_flight > 0:
            self._in_flight -= 1
            config = self._config
            if self._share == 0.0:
                # It answers: no longer a province that is simply down. The ramp judges
                # only what it lets through.
                self._reopens = 0
                self._share = config.ramp_start
                self._forget_results()
            else:
                self._share += config.ramp_step
            self._remember(failed=False)
            if self._share >= _FULL:
                self._share = 1.0
                if self._streak >= config.close_after:
                    self._close()

    def record_failure(self) -> None:
        """A call let through failed in a way that says the province is ill."""
        state = self._state
        config = self._config
        if state is BreakerState.CLOSED:
            self._consecutive += 1
            window = self._window
            window.advance()
            window.add_a()
            window.add_b()
            if self._consecutive >= config.consecutive_failures or (
                window.a >= config.min_requests and window.b >= config.failure_ratio * window.a
            ):
                self._open()
        elif state is BreakerState.HALF_OPEN and self._in_flight > 0:
            self._in_flight -= 1
            self._remember(failed=True)
            if self._share == 0.0:  # probing: every probe so far failed
                reopen = self._failures >= config.probe_failures
            else:
                self._share = max(config.ramp_start, self._share * (1.0 - config.ramp_step))
                results = len(self._recent)
                reopen = results >= config.min_requests and (
                    self._failures >= config.reopen_ratio * results
                )
            if reopen:
                self._reopens += 1
                self._open()

    def release(self) -> None:
        """A call let through ended without a verdict (e.g. cancelled): it is no longer out."""
        if self._state is BreakerState.HALF_OPEN and self._in_flight > 0:
            self._in_flight -= 1

    def _remember(self, *, failed: bool) -> None:
        recent = self._recent
        if len(recent) == recent.maxlen and recent[0]:
            self._failures -= 1
        recent.append(failed)
        self._failures += failed
        self._streak = 0 if failed else self._streak + 1

    def _open(self) -> None:
        self._open_until = self._clock() + self.open_duration()
        self._move(BreakerState.OPEN)

    def _forget_results(self) -> None:
        self._recent.clear()
        self._failures = 0
        self._streak = 0

    def _half_open(self) -> None:
        self._in_flight = 0
        self._share = 0.0
        self._credit = 0.0
        self._forget_results()
        self._move(BreakerState.HALF_OPEN)

    def _close(self) -> None:
        self._consecutive = 0
        self._window.reset()
        self._reopens = 0
        self._move(BreakerState.CLOSED)

    def _move(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        if self._on_transition is not None:
            self._on_transition(old, new)
