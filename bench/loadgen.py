"""A grpc.aio load generator: closed loop at a fixed concurrency, or open loop at a fixed rate.

Calls carry raw bytes (the payloads are serialized up front, so the generator's own cost is the
same for every path). Closed loop: `concurrency` workers, each sending its next call when the
last one answered. Open loop: calls start on a fixed schedule whatever happens to earlier ones,
and each latency is measured from the call's *intended* send time, so a stalled server (or a
stalled generator) shows in the figures instead of hiding in a slower send rate.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import grpc

CALL_TIMEOUT = 10.0
"""Seconds allowed for one call."""


def _identity(data: bytes) -> bytes:
    return data


@dataclass
class Sample:
    """What one measured segment saw."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    """Seconds, of successful calls."""
    errors: Counter[str] = field(default_factory=Counter)
    """Status code name → count."""

    @property
    def requests(self) -> int:
        """Calls completed, successful or not."""
        return len(self.latencies) + sum(self.errors.values())

    def merge(self, other: Sample) -> None:
        """Adds another segment's figures to these."""
        self.seconds += other.seconds
        self.latencies.extend(other.latencies)
        self.errors.update(other.errors)


class Operation(Protocol):
    """What the load generator repeats: one call (`Target`), or several that make up one
    operation."""

    async def once(self, sample: Sample, started: float) -> None:
        """One operation, recorded in `sample`: its latency counted from `started`
        (perf_counter seconds), or its error."""

    async def close(self) -> None:
        """Releases what the operation holds."""


class Target:
    """One unary method, called with pre-serialized requests: on one server, or spread over
    several replicas of it.

    Each address gets one channel; successive calls take the channels in turn (call i goes to
    replica i mod N), whichever caller makes them, so N replicas each see 1/N of the calls.
    With `check`, a reply that is not the outcome wanted counts as the error `check` names
    instead of a latency (the latency is taken when the reply arrives, before the check).
    """

    def __init__(
        self,
        address: str | Sequence[str],
        method: str,
        payload: Callable[[], bytes],
        check: Callable[[bytes], str | None] | None = None,
    ) -> None:
        addresses = [address] if isinstance(address, str) else list(address)
        if not addresses:
            raise ValueError("a target needs at least one address")
        self.channels = [grpc.aio.insecure_channel(a) for a in addresses]
        self._calls = itertools.cycle(
            [
                channel.unary_unary(
                    method, request_serializer=_identity, response_deserializer=_identity
                )
                for channel in self.channels
            ]
        )
        self.payload = payload
        self.check = check

    async def once(self, sample: Sample, started: float) -> None:
        """One call; its latency counted from `started` (perf_counter seconds)."""
        try:
            reply = await next(self._calls)(self.payload(), timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            sample.errors[error.code().name] += 1
            return
        latency = time.perf_counter() - started
        problem = self.check(reply) if self.check is not None else None
        if problem:
            sample.errors[problem] += 1
        else:
            sample.latencies.append(latency)

    async def close(self) -> None:
        """Closes the channels."""
        for channel in self.channels:
            await channel.close()


class Window(Protocol):
    """What is read at the edges of a measured window (e.g. the CPU of the processes)."""

    async def open(self) -> None:
        """Called as the window opens."""

    async def close(self) -> None:
        """Called as the window closes."""


async def closed_loop(
    target: Operation,
    *,
    concurrency: int,
    seconds: float,
    lead: float = 0.0,
    window: Window | None = None,
) -> Sample:
    """`concurrency` callers, each calling back to back for `seconds`.

    With `window`, the callers first call for `lead` seconds unmeasured; then `window.open()`
    is awaited, the sample takes the calls that end in the next `seconds`, and
    `window.close()` is awaited before the callers stop: the window sees the steady state
    only, the calls in flight at its edges neither waited for nor counted.
    """
    sample = Sample()
    start = time.perf_counter()
    if window is None:
        end = start + seconds

        async def caller() -> None:
            while (now := time.perf_counter()) < end:
                await target.once(sample, now)

        await asyncio.gather(*(caller() for _ in range(concurrency)))
        sample.seconds = time.perf_counter() - start
        return sample
    measuring = stopping = False

    async def steady_caller() -> None:
        while not stopping:
            one = Sample()
            await target.once(one, time.perf_counter())
            if measuring:
                sample.merge(one)

    callers = [asyncio.create_task(steady_caller()) for _ in range(concurrency)]
    try:
        await asyncio.sleep(lead)
        await window.open()
        measuring, opened = True, time.perf_counter()
        await asyncio.sleep(seconds)
        measuring = False
        sample.seconds = time.perf_counter() - opened
        await window.close()
    finally:
        stopping = True
        await asyncio.gather(*callers)
    return sample


async def open_loop(target: Operation, *, rate: float, seconds: float) -> Sample:
    """Calls started `rate` times a second for `seconds`, latency from the intended start."""
    sample = Sample()
    start = time.perf_counter()
    total = int(rate * seconds)
    tasks: set[asyncio.Task[None]] = set()
    for i in range(total):
        intended = start + i / rate
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(target.once(sample, intended))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    sample.seconds = time.perf_counter() - start
    return sample


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]
