"""A per-province circuit breaker: stop calling a province that is down, probe it, come back.

Invariants, in plain words:

- CLOSED lets every call through. It opens after `consecutive_failures` failures in a row, or
  when, with at least `min_requests` results in the sliding window, the failed share reaches
  `failure_ratio`.
- OPEN lets nothing through until its open duration has elapsed: `open_base`, doubled on each
  re-open from HALF_OPEN, at most `open_max`, back to `open_base` once the breaker closes.
- HALF_OPEN lets at most `half_open_probes` calls through at a time. A probe's success closes
  the breaker (forgetting all counts); its failure re-opens it.
- Only failures that say the province is ill are recorded as failures (the caller decides:
  see `policy.RetryDecision.unhealthy`); any answer from the province is a success. A call let
  through that ends without a verdict (cancelled) must be `release`d, or a half-open probe slot
  would stay taken.
- Transitions happen inside `allow` and `record_*` (OPEN becomes HALF_OPEN on the first
  `allow` after the open duration), and each one calls `on_transition(old, new)` once.
- Results recorded while OPEN, or in HALF_OPEN with no probe out, come from calls let through
  earlier and are ignored.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.routing.budget import SlidingWindow

__all__ = ["BreakerConfig", "BreakerState", "CircuitBreaker"]


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
    """Results the window must hold before `failure_ratio` applies."""
    window: float = 10.0
    """Length of the sliding window for `failure_ratio`."""
    buckets: int = 10
    """Buckets the window is cut into."""
    open_base: float = 5.0
    """How long the breaker stays open the first time."""
    open_max: float = 60.0
    """Cap of the open duration, which doubles on each re-open."""
    half_open_probes: int = 1
    """Calls let through at a time while half-open."""

    def __post_init__(self) -> None:
        if self.consecutive_failures < 1 or self.half_open_probes < 1 or self.min_requests < 1:
            raise ValueError("consecutive_failures, half_open_probes, min_requests must be >= 1")
        if not 0 < self.failure_ratio <= 1:
            raise ValueError("failure_ratio must be in (0, 1]")
        if self.open_base <= 0 or self.open_max < self.open_base:
            raise ValueError("open_base must be positive and open_max at least open_base")


Transition = Callable[[BreakerState, BreakerState], None]


class CircuitBreaker:
    """The breaker of one province. Not thread-safe: use it from one event loop."""

    __slots__ = (
        "_clock",
        "_config",
        "_consecutive",
        "_on_transition",
        "_open_until",
        "_probes",
        "_reopens",
        "_state",
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
        # a: results, b: failures.
        self._window = SlidingWindow(self._config.window, self._config.buckets, clock)
        self._open_until = 0.0
        self._reopens = 0
        self._probes = 0

    @property
    def state(self) -> BreakerState:
        """The current state, as of the last call to this breaker."""
        return self._state

    @property
    def config(self) -> BreakerConfig:
        """The configuration this breaker applies."""
        return self._config

    def blocking(self) -> bool:
        """Would `allow` refuse a call now? Asks without changing state or taking a slot."""
        state = self._state
        if state is BreakerState.CLOSED:
            return False
        if state is BreakerState.OPEN:
            return self._clock() < self._open_until
        return self._probes >= self._config.half_open_probes

    def open_duration(self) -> float:
        """How long the breaker stays open if it opens now."""
        return min(self._config.open_max, self._config.open_base * 2.0 ** min(self._reopens, 64))

    def allow(self) -> bool:
        """May a call go to the province now? A True in HALF_OPEN takes a probe slot."""
        state = self._state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            if self._clock() < self._open_until:
                return False
            self._probes = 0
            self._move(BreakerState.HALF_OPEN)
        if self._probes < self._config.half_open_probes:
            self._probes += 1
            return True
        return False

    def record_success(self) -> None:
        """The province answered a call let through."""
        state = self._state
        if state is BreakerState.CLOSED:
            self._consecutive = 0
            self._window.advance()
            self._window.add_a()
        elif state is BreakerState.HALF_OPEN and self._probes > 0:
            self._consecutive = 0
            self._window.reset()
            self._reopens = 0
            self._probes = 0
            self._move(BreakerState.CLOSED)

    def record_failure(self) -> None:
        """A call let through failed in a way that says the province is ill."""
        state = self._state
        if state is BreakerState.CLOSED:
            self._consecutive += 1
            window = self._window
            window.advance()
            window.add_a()
            window.add_b()
            config = self._config
            if self._consecutive >= config.consecutive_failures or (
                window.a >= config.min_requests and window.b >= config.failure_ratio * window.a
            ):
                self._open()
        elif state is BreakerState.HALF_OPEN and self._probes > 0:
            self._reopens += 1
            self._open()

    def release(self) -> None:
        """A call let through ended without a verdict (e.g. cancelled): frees its probe slot."""
        if self._state is BreakerState.HALF_OPEN and self._probes > 0:
            self._probes -= 1

    def _open(self) -> None:
        self._open_until = self._clock() + self.open_duration()
        self._consecutive = 0
        self._window.reset()
        self._probes = 0
        self._move(BreakerState.OPEN)

    def _move(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        if self._on_transition is not None:
            self._on_transition(old, new)
