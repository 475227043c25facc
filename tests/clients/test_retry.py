"""Tests for tongban_client.retry: what is retried, after how long, until when. The waits are
recorded, not slept."""

from __future__ import annotations

import grpc
import pytest

from tongban_client.config import RetryPolicy
from tongban_client.errors import InvalidArgument, TongbanClientError, Unavailable
from tongban_client.retry import call_with_retries


class Script:
    """An attempt that raises the scripted errors in turn, then answers "done"."""

    def __init__(self, *errors: TongbanClientError) -> None:
        self.errors = list(errors)
        self.attempts = 0
        self.waits: list[float] = []

    async def attempt(self) -> str:
        self.attempts += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def run(self, policy: RetryPolicy) -> str:
        return await call_with_retries(policy, "Call", self.attempt, sleep=self.sleep)


def unavailable(retry_delay: float | None = None) -> Unavailable:
    return Unavailable(grpc.StatusCode.UNAVAILABLE, "away", retry_delay=retry_delay)


async def test_the_gateways_retry_delay_is_waited_as_it_asked() -> None:
    script = Script(unavailable(1.5), unavailable(0.25))
    assert await script.run(RetryPolicy(max_backoff=1.0)) == "done"
    assert script.waits == [1.5, 0.25]
    assert script.attempts == 3


async def test_without_retry_info_full_jitter_under_a_doubling_capped_ceiling() -> None:
    policy = RetryPolicy(max_attempts=8, initial_backoff=0.1, max_backoff=0.5)
    script = Script(*(unavailable() for _ in range(7)))
    assert await script.run(policy) == "done"
    ceilings = [0.1, 0.2, 0.4, 0.5, 0.5, 0.5, 0.5]
    assert len(script.waits) == len(ceilings)
    assert all(0 <= wait <= ceiling for wait, ceiling in zip(script.waits, ceilings, strict=True))


async def test_attempts_run_out_and_the_last_error_is_raised() -> None:
    last = unavailable(0.1)
    script = Script(unavailable(0.1), unavailable(0.1), last, unavailable(0.1))
    with pytest.raises(Unavailable) as caught:
        await script.run(RetryPolicy(max_attempts=3))
    assert caught.value is last
    assert script.attempts == 3


async def test_a_wait_past_give_up_after_is_not_started() -> None:
    script = Script(unavailable(0.5), unavailable(60.0))
    with pytest.raises(Unavailable) as caught:
        await script.run(RetryPolicy(give_up_after=10.0))
    assert caught.value.retry_delay == 60.0
    assert script.waits == [0.5]


async def test_only_unavailable_is_retried() -> None:
    script = Script(InvalidArgument(grpc.StatusCode.INVALID_ARGUMENT, "bad"))
    with pytest.raises(InvalidArgument):
        await script.run(RetryPolicy())
    assert (script.attempts, script.waits) == (1, [])


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"initial_backoff": 0.0}, "backoff"),
        ({"initial_backoff": 2.0, "max_backoff": 1.0}, "backoff"),
        ({"give_up_after": -1.0}, "give_up_after"),
    ],
)
def test_a_policy_that_cannot_work_is_refused(fields: dict[str, float], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        RetryPolicy(**fields)  # type: ignore[arg-type]
