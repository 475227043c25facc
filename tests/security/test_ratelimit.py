"""Token buckets per caller and method, on a fake clock."""

from __future__ import annotations

import pytest

from gateway.security.ratelimit import RateLimit, RateLimiter, parse_rate_limits

SUBMIT = "/gateway.api.v1.ApplicationService/SubmitApplication"
GET = "/gateway.api.v1.ApplicationService/GetApplication"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_with_the_wait_until_the_next_token() -> None:
    clock = Clock()
    limiter = RateLimiter({"SubmitApplication": RateLimit(rate=2.0, burst=3)}, clock=clock)
    assert [limiter.acquire("a", SUBMIT) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a", SUBMIT) == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.acquire("a", SUBMIT) == 0.0
    assert limiter.acquire("a", SUBMIT) > 0
    clock.now += 1000  # never more than the burst
    assert [limiter.acquire("a", SUBMIT) for _ in range(4)][-1] > 0


def test_callers_and_methods_have_their_own_buckets() -> None:
    limiter = RateLimiter({"*": RateLimit(rate=1.0, burst=1)}, clock=Clock())
    assert limiter.acquire("a", SUBMIT) == 0.0
    assert limiter.acquire("a", SUBMIT) > 0
    assert limiter.acquire("b", SUBMIT) == 0.0
    assert limiter.acquire("a", GET) == 0.0


def test_lookup_full_name_then_short_name_then_wildcard() -> None:
    limits = {
        SUBMIT: RateLimit(1.0, 1),
        "GetApplication": RateLimit(2.0, 2),
        "*": RateLimit(3.0, 3),
    }
    limiter = RateLimiter(limits)
    assert limiter.limit_for(SUBMIT) == RateLimit(1.0, 1)
    assert limiter.limit_for(GET) == RateLimit(2.0, 2)
    assert limiter.limit_for("/x.Y/Z") == RateLimit(3.0, 3)
    assert RateLimiter({}).limit_for(SUBMIT) is None
    assert RateLimiter({}).acquire("a", SUBMIT) == 0.0


def test_memory_is_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter({"*": RateLimit(1.0, 1)}, clock=clock, max_buckets=10)
    for i in range(100):
        limiter.acquire(f"caller-{i}", SUBMIT)
    assert len(limiter._buckets) <= 10
    # The newest caller's bucket is kept: it is still empty.
    assert limiter.acquire("caller-99", SUBMIT) > 0


def test_parse() -> None:
    assert parse_rate_limits("SubmitApplication=50/100, *=200") == {
        "SubmitApplication": RateLimit(50.0, 100.0),
        "*": RateLimit(200.0, 200.0),
    }
    assert parse_rate_limits("") == {}
    for bad in ("x", "x=", "x=0/1", "x=1/0", "x=a/b", "=1/1"):
        with pytest.raises(ValueError):  # noqa: PT011
            parse_rate_limits(bad)
