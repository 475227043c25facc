"""Per-caller, per-method token buckets.

Invariants, in plain words:

- A bucket holds at most `burst` tokens and refills at `rate` tokens per second; a call takes
  one token or is refused with the time until one is available (the RetryInfo delay).
- Buckets are keyed by (caller, method): one province flooding SubmitApplication does not
  slow another province, nor its own reads.
- Memory is bounded: at most `max_buckets` buckets; a full bucket holds nothing worth keeping,
  so when the table is full the full (idle) ones are dropped first, then the oldest.
- Pure: the clock is injected; no I/O, no locks (one event loop).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

WILDCARD = "*"
"""The rate-limit key that applies to every method without its own limit."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One method's limit."""

    rate: float
    """Tokens added per second."""
    burst: float
    """Bucket size: calls allowed at once after a quiet period."""

    def __post_init__(self) -> None:
        if not (self.rate > 0 and self.burst >= 1):
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")


def parse_rate_limits(text: str) -> dict[str, RateLimit]:
    """Parses `SubmitApplication=50/100,*=200/400` (method=rate per second/burst).

    A method is its short name (`SubmitApplication`), its full name
    (`/gateway.api.v1.ApplicationService/SubmitApplication`) or `*`.
    """
    limits: dict[str, RateLimit] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        method, sep, spec = item.partition("=")
        rate, slash, burst = spec.partition("/")
        if not sep or not method.strip() or not rate:
            raise ValueError(f"rate limit {item!r} is not METHOD=RATE[/BURST]")
        try:
            value = float(rate)
            limits[method.strip()] = RateLimit(value, float(burst) if slash else max(1.0, value))
        except ValueError as error:
            raise ValueError(f"rate limit {item!r}: {error}") from None
    return limits


class RateLimiter:
    """Decides whether a caller may call a method now."""

    def __init__(
        self,
        limits: Mapping[str, RateLimit],
        *,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = 10_000,
    ) -> None:
        self._limits = dict(limits)
        self._clock = clock
        self._max = max_buckets
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """Whether any limit is configured."""
        return bool(self._limits)

    def limit_for(self, method: str) -> RateLimit | None:
        """The limit of a full method name, by full name, short name, then `*`."""
        limits = self._limits
        found = limits.get(method) or limits.get(method.rsplit("/", 1)[-1])
        return found or limits.get(WILDCARD)

    def acquire(self, caller: str, method: str) -> float:
        """Takes a token: 0.0 when allowed, else the seconds until a token is available."""
        limit = self.limit_for(method)
        if limit is None:
            return 0.0
        now = self._clock()
        key = (caller, method)
        tokens, stamp = self._buckets.pop(key, (limit.burst, now))
        tokens = min(limit.burst, tokens + (now - stamp) * limit.rate)
        if tokens >= 1.0:
            self._store(key, tokens - 1.0, now, limit)
            return 0.0
        self._store(key, tokens, now, limit)
        return (1.0 - tokens) / limit.rate

    def _store(self, key: tuple[str, str], tokens: float, now: float, limit: RateLimit) -> None:
        self._buckets[key] = (tokens, now)
        if len(self._buckets) <= self._max:
            return
        for old_key, (old_tokens, old_stamp) in list(self._buckets.items()):
            if len(self._buckets) <= self._max:
                return
            if old_key != key and old_tokens + (now - old_stamp) * limit.rate >= limit.burst:
                del self._buckets[old_key]
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
