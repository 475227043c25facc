"""A per-province retry budget, as in Envoy and Linkerd: retries may add only a bounded load.

Invariants, in plain words:

- Time is cut into buckets of `window / buckets` seconds; "the window" is the current bucket
  and the `buckets - 1` before it. Counting is O(1) amortised: a bucket is cleared once, when
  the clock first passes it.
- A retry is granted only if, counting it, the retries in the window stay at most
  `ratio * requests + floor` (requests in the same window). The floor lets a quiet province be
  retried at all; the ratio keeps a failing busy one from receiving (1 + ratio) times its load
  at most, instead of `max_attempts` times.
- A refused retry is not counted as a retry; it is counted in `exhausted`.
- The clock is injected (`time.monotonic` by default) and is expected not to go backwards;
  if it does, the bucket it points to is treated as the current one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["BudgetConfig", "RetryBudget", "SlidingWindow"]


class SlidingWindow:
    """Two event counters over a sliding window of `buckets` buckets, for budget and breaker."""

    __slots__ = ("_a", "_b", "_buckets", "_clock", "_current", "_width", "a", "b")

    def __init__(self, window: float, buckets: int, clock: Callable[[], float]) -> None:
        if window <= 0 or buckets < 1:
            raise ValueError("window must be positive and buckets at least 1")
        self._width = window / buckets
        self._buckets = buckets
        self._clock = clock
        self._a = [0] * buckets
        self._b = [0] * buckets
        self._current = math.floor(clock() / self._width)
        self.a = 0
        """Events of the first kind in the window (as of the last `advance`)."""
        self.b = 0
        """Events of the second kind in the window (as of the last `advance`)."""

    def advance(self) -> None:
        """Moves the window to the clock's now, dropping the buckets that left it."""
        now = math.floor(self._clock() / self._width)
        if now <= self._current:
            return
        if now - self._current >= self._buckets:
            self.reset()
        else:
            for index in range(self._current + 1, now + 1):
                slot = index % self._buckets
                self.a -= self._a[slot]
                self.b -= self._b[slot]
                self._a[slot] = 0
                self._b[slot] = 0
        self._current = now

    def add_a(self) -> None:
        """Counts one event of the first kind now; call `advance` first."""
        self._a[self._current % self._buckets] += 1
        self.a += 1

    def add_b(self) -> None:
        """Counts one event of the second kind now; call `advance` first."""
        self._b[self._current % self._buckets] += 1
        self.b += 1

    def reset(self) -> None:
        """Forgets every event."""
        for slot in range(self._buckets):
            self._a[slot] = 0
            self._b[slot] = 0
        self.a = 0
        self.b = 0


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """The retry budget of one province."""

    ratio: float = 0.2
    """Retries allowed per request in the window (Envoy and Linkerd: 20%)."""
    floor: int = 3
    """Retries allowed in every window whatever the traffic."""
    window: float = 10.0
    """Length of the sliding window, in seconds."""
    buckets: int = 10
    """Buckets the window is cut into: its granularity."""

    def __post_init__(self) -> None:
        if self.ratio < 0 or self.floor < 0:
            raise ValueError("ratio and floor must not be negative")
        if self.window <= 0 or self.buckets < 1:
            raise ValueError("window must be positive and buckets at least 1")


class RetryBudget:
    """The retry budget of one province. Not thread-safe: use it from one event loop."""

    __slots__ = ("_config", "_window", "exhausted", "requests", "retries")

    def __init__(
        self, config: BudgetConfig | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._config = config or BudgetConfig()
        self._window = SlidingWindow(self._config.window, self._config.buckets, clock)
        self.requests = 0
        """Requests recorded, ever (a counter)."""
        self.retries = 0
        """Retries granted, ever (a counter)."""
        self.exhausted = 0
        """Retries refused because the budget was spent, ever (a counter)."""

    @property
    def config(self) -> BudgetConfig:
        """The configuration this budget applies."""
        return self._config

    def record_request(self) -> None:
        """Counts one call (not one attempt) to the province."""
        self._window.advance()
        self._window.add_a()
        self.requests += 1

    def try_acquire_retry(self) -> bool:
        """Grants one retry and counts it, or refuses it and counts the refusal."""
        window = self._window
        window.advance()
        if window.b + 1 <= self._config.ratio * window.a + self._config.floor:
            window.add_b()
            self.retries += 1
            return True
        self.exhausted += 1
        return False

    def window_counts(self) -> tuple[int, int]:
        """(requests, retries) in the current window."""
        self._window.advance()
        return self._window.a, self._window.b
